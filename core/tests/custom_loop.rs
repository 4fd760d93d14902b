//! Runs `core/examples/custom_loop.rs`: two agents over loopback UDP in a hand-written loop.

#[path = "../examples/custom_loop.rs"]
mod custom_loop;

#[test]
fn the_custom_loop_example_connects_and_exchanges_data() {
    let took = custom_loop::run().unwrap_or_else(|e| panic!("{e}"));
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}
