//! The signal protocol codec: line framing over arbitrary reads, and every request and notice
//! parsed and written back.

use holepunch_core::signal::{Line, LineSplitter, Notice, Request, is_valid_name};
use proptest::prelude::*;

fn lines_of(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
    let mut s = LineSplitter::new(max);
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c);
        while let Some(l) = s.poll_line() {
            out.push(l);
        }
    }
    out
}

fn text(s: &str) -> Line {
    Line::Text(s.as_bytes().to_vec())
}

#[test]
fn lines_straddle_reads_and_lose_their_endings() {
    let got = lines_of(
        32,
        &[b"ping\r", b"\nto bo", b"b hi\n", b"tail without newline"],
    );
    assert_eq!(got, vec![text("ping"), text("to bob hi")]);
}

#[test]
fn an_overlong_line_is_reported_once_and_skipped_to_its_end() {
    // 40 bytes against a limit of 8, fed in pieces: one TooLong, then the next line is intact.
    let got = lines_of(8, &[&[b'x'; 20], &[b'x'; 20], b"\nok\n"]);
    assert_eq!(got, vec![Line::TooLong, text("ok")]);
    // Exactly at the limit is fine; one past it (complete in one read) is not.
    assert_eq!(
        lines_of(4, &[b"abcd\nabcde\n"]),
        vec![text("abcd"), Line::TooLong]
    );
}

#[test]
fn the_splitter_holds_at_most_one_line_and_one_read() {
    let mut s = LineSplitter::new(8);
    for _ in 0..100 {
        s.feed(&[b'y'; 7]);
        while s.poll_line().is_some() {}
        assert!(s.buffered() <= 9, "{} bytes held", s.buffered());
    }
}

#[test]
fn requests_parse_as_the_server_reads_them() {
    assert_eq!(Request::parse(""), Request::Empty);
    assert_eq!(Request::parse(" x"), Request::Empty);
    assert_eq!(Request::parse("ping"), Request::Ping);
    assert_eq!(
        Request::parse("register alice"),
        Request::Register {
            name: "alice",
            proof: None
        }
    );
    assert_eq!(
        Request::parse("register alice 0a1b extra"),
        Request::Register {
            name: "alice",
            proof: Some("0a1b extra")
        }
    );
    assert_eq!(
        Request::parse("to bob a=candidate:1 1 udp"),
        Request::To {
            peer: "bob",
            text: "a=candidate:1 1 udp"
        }
    );
    assert_eq!(Request::parse("PING"), Request::Unknown("PING"));
}

#[test]
fn notices_parse_as_the_client_reads_them() {
    assert_eq!(Notice::parse("ok"), Notice::Ok);
    assert_eq!(Notice::parse("pong"), Notice::Pong);
    assert_eq!(Notice::parse("challenge 00ff"), Notice::Challenge("00ff"));
    assert_eq!(
        Notice::parse("from alice ice-pwd:x y"),
        Notice::From {
            name: "alice",
            text: "ice-pwd:x y"
        }
    );
    assert_eq!(
        Notice::parse("error queue-full bob"),
        Notice::Error("queue-full bob")
    );
    assert_eq!(Notice::parse("error"), Notice::Error(""));
    assert_eq!(Notice::parse("okay"), Notice::Other("okay"));
}

#[test]
fn names_are_one_to_sixty_four_printable_characters() {
    assert!(is_valid_name("a"));
    assert!(is_valid_name(&"n".repeat(64)));
    assert!(!is_valid_name(&"n".repeat(65)));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name("a b"));
    assert!(!is_valid_name("é"));
}

fn word() -> impl Strategy<Value = String> {
    "[!-~]{1,12}"
}

proptest! {
    #[test]
    fn requests_round_trip(name in word(), proof in proptest::option::of("[ -~]{0,20}"),
                           text in "[ -~]{0,40}") {
        for request in [
            Request::Ping,
            Request::Register { name: &name, proof: proof.as_deref() },
            Request::To { peer: &name, text: &text },
        ] {
            let line = request.to_string();
            prop_assert_eq!(Request::parse(&line), request);
        }
    }

    #[test]
    fn notices_round_trip(name in word(), text in "[ -~]{0,40}") {
        for notice in [
            Notice::Ok,
            Notice::Pong,
            Notice::Challenge(&text),
            Notice::From { name: &name, text: &text },
            Notice::Error(&text),
        ] {
            let line = notice.to_string();
            prop_assert_eq!(Notice::parse(&line), notice);
        }
    }

    #[test]
    fn any_chunking_gives_the_same_lines(stream in proptest::collection::vec(any::<u8>(), 0..600),
                                          size in 1usize..64) {
        let whole = lines_of(32, &[&stream]);
        let chunks: Vec<&[u8]> = stream.chunks(size).collect();
        prop_assert_eq!(lines_of(32, &chunks), whole);
    }
}
