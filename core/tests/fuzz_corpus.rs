//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/*`) through the same checks the
//! fuzz targets run (`fuzz/src/checks.rs`), so every seed and every reproducer added there is a
//! regression test under a plain `cargo test`, without nightly or cargo-fuzz.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/agent_checks.rs"]
mod agent_checks;
#[path = "../../fuzz/src/checks.rs"]
mod checks;
#[path = "../../fuzz/src/key_checks.rs"]
mod key_checks;
#[path = "../../fuzz/src/nat64_checks.rs"]
mod nat64_checks;
#[path = "../../fuzz/src/portmap_checks.rs"]
mod portmap_checks;
#[path = "../../fuzz/src/server_checks.rs"]
mod server_checks;
#[path = "../../fuzz/src/signal_checks.rs"]
mod signal_checks;
#[path = "../../fuzz/src/turn_checks.rs"]
mod turn_checks;
#[path = "../../fuzz/src/upnp_checks.rs"]
mod upnp_checks;

/// What a fuzz target runs on one input.
type Check = fn(&[u8]);

/// Every fuzz target and its check; a corpus directory not listed here is an error.
const TARGETS: [(&str, Check); 18] = [
    ("stun_message", checks::check_message),
    ("stun_attribute", checks::check_attribute_input),
    ("ice_candidate", checks::check_ice_candidate),
    ("stun_server", server_checks::check_server),
    ("dns_answer", nat64_checks::check_dns_answer),
    ("natpmp_response", portmap_checks::check_natpmp),
    ("pcp_response", portmap_checks::check_pcp),
    ("portmap_client", portmap_checks::check_client),
    ("upnp_ssdp", upnp_checks::check_ssdp),
    ("upnp_http", upnp_checks::check_http),
    ("upnp_xml", upnp_checks::check_xml),
    ("turn_channel", turn_checks::check_channel),
    ("turn_message", turn_checks::check_message),
    ("turn_server", turn_checks::check_server),
    ("key_line", key_checks::check_key_line),
    ("ice_agent", agent_checks::check_agent),
    ("offer_lines", agent_checks::check_offer),
    ("signal_lines", signal_checks::check_signal),
];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// The files of one target's corpus, sorted; panics when there are none.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_root().join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus files", dir.display());
    files
}

#[test]
fn every_corpus_directory_belongs_to_a_target() {
    let root = corpus_root();
    let mut dirs: Vec<String> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().expect("named").to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    targets.sort();
    assert_eq!(dirs, targets, "fuzz/corpus/ and TARGETS disagree");
}

#[test]
fn every_corpus_file_passes_its_targets_checks() {
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        for (path, data) in corpus(target) {
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "corpus files failing their checks: {failed:#?}"
    );
}

/// The agent seeds must reach a selected path, where the authentication invariant bites; the
/// forged ones must not.
#[test]
fn agent_seeds_connect_only_when_signed() {
    for (path, data) in corpus("ice_agent") {
        let name = path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        let connected = agent_checks::run_agent(&data);
        if name.starts_with("connects-") {
            assert!(connected, "{name} no longer reaches a selected path");
        }
        if name.starts_with("forged-") {
            assert!(!connected, "{name}: forged datagrams selected a path");
        }
    }
}

/// The seeds must exercise the success paths too, or the replay would prove little.
#[test]
fn rfc5769_seeds_parse_and_verify() {
    use holepunch_core::stun::{IntegrityKey, Message};
    let key = IntegrityKey::short_term(checks::FUZZ_PASSWORD);
    let seeds = corpus("stun_message");
    for name in [
        "rfc5769-2.1-request",
        "rfc5769-2.2-response-ipv4",
        "rfc5769-2.3-response-ipv6",
    ] {
        let (_, data) = seeds
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("seed {name} is missing"));
        let msg = Message::parse(data).expect("seed parses");
        msg.verify_integrity(&key).expect("seed verifies");
        msg.verify_fingerprint().expect("seed fingerprint");
    }
}
