//! The netns lab leaves nothing behind: runs last among the lab tests (cargo runs test files in
//! name order) and checks that no lab namespace or lab process outlived its test process, and
//! that a test that panics mid-way still tears its lab down.
//!
//! Needs root (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Profile, Stream};

/// A test that panics with a lab full of processes (one forks a child, one is started outside
/// the harness's bookkeeping) leaves no namespace and no process behind.
#[test]
fn a_panicking_test_leaves_nothing_behind() {
    if lab::require().is_none() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let lab = lab::require().expect("checked above");
        tx.send((lab.prefix().to_string(), lab.dir().to_path_buf()))
            .expect("send prefix");
        let site = lab.nat_site(Profile::Cgnat, false);
        let srv = lab.server_host(&["203.0.113.3".parse().expect("ip")]);
        let _server = lab.spawn(
            &srv,
            "stun-server",
            lab_common::holepunch(),
            ["stun-server", "--listen", "203.0.113.3:3478"],
        );
        // A shell that forks: the background sleep shares its process group.
        let mut shell = lab.spawn(
            site.host(),
            "forker",
            "sh",
            ["-c", "sleep 300 & echo forked; sleep 300"],
        );
        shell.expect_line(Stream::Stdout, Duration::from_secs(10), |l| l == "forked");
        // A process the lab does not track: teardown must find it inside the namespace.
        let stray = lab
            .command(&site.router, "sleep", ["300"])
            .spawn()
            .expect("start an untracked process");
        // Leak the handle on purpose: only the lab's teardown can end it.
        std::mem::forget(stray);
        panic!("deliberate panic with a full lab");
    })
    .join();
    assert!(joined.is_err(), "the thread must have panicked");
    let (prefix, dir) = rx.recv().expect("the lab's prefix");
    // A panicking test's lab keeps its logs for inspection; these are of no interest.
    let _ = std::fs::remove_dir_all(dir);

    // Processes killed by teardown may take a moment to be reaped by init.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mine = lab::owned_by(std::process::id());
        let namespaces: Vec<_> = mine
            .namespaces
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .collect();
        let processes: Vec<_> = mine
            .processes
            .iter()
            .filter(|p| p.prefix == prefix)
            .collect();
        if namespaces.is_empty() && processes.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind by a panicking test: namespaces {namespaces:?}, processes {processes:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No lab namespace or lab process is left whose test process has exited (the lab tests that
/// ran before this file, or an earlier run killed before it could clean up). Anything found is
/// removed, so one failure does not haunt later runs.
#[test]
fn no_leftovers_from_earlier_lab_tests() {
    if lab::available().is_err() {
        // require() prints the reason (or fails under CI).
        let _ = lab::require();
        return;
    }
    let orphans = lab::orphans();
    if !orphans.is_empty() {
        lab::remove(&orphans);
        panic!(
            "lab leftovers (now removed): namespaces {:?}, processes {:?}",
            orphans.namespaces, orphans.processes
        );
    }
}
