//! Invariants of the signal protocol's codec (`holepunch_core::signal`) on untrusted input,
//! shared by the `signal_lines` fuzz target and the corpus replay test.
//!
//! The input is a byte stream, fed to a [`LineSplitter`] in chunks whose sizes come from the
//! input itself (so lines straddle reads the way TCP delivers them). Lines must never exceed the
//! limit or hold a `\n`, the splitter must never hold more than one line plus one read, and
//! every line, read as a request and as a server notice, must write back to a line that parses
//! the same.

use holepunch_core::signal::{Line, LineSplitter, Notice, Request};

/// A small limit, so over-long lines are common.
const MAX: usize = 64;

/// Input of the `signal_lines` target: byte 0 sets the read size (1 to 256), the rest is the
/// stream.
pub fn check_signal(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let read = usize::from(size) + 1;
    let mut splitter = LineSplitter::new(MAX);
    for chunk in stream.chunks(read) {
        splitter.feed(chunk);
        while let Some(line) = splitter.poll_line() {
            if let Line::Text(bytes) = line {
                assert!(bytes.len() <= MAX, "a line past the limit: {}", bytes.len());
                assert!(!bytes.contains(&b'\n'), "a line holding a newline");
                check_line(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(
            splitter.buffered() <= MAX + 1,
            "{} bytes held after draining",
            splitter.buffered()
        );
    }
}

/// A line read as either side's must write back to one that reads the same.
fn check_line(line: &str) {
    let request = Request::parse(line);
    let written = request.to_string();
    assert_eq!(Request::parse(&written), request, "{line:?} -> {written:?}");
    let notice = Notice::parse(line);
    let written = notice.to_string();
    assert_eq!(Notice::parse(&written), notice, "{line:?} -> {written:?}");
}
