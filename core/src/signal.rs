//! The `holepunch signal` line protocol as values: bounded line framing of a byte stream, and
//! the lines each side sends, parsed and written. The server and client that move these lines
//! over TCP live in `holepunch-tokio` (`signal`), which documents the protocol in full; this
//! module is what both of them and the fuzz target agree on, with no I/O.
//!
//! Client to server: `register NAME [PROOF]`, `to PEER TEXT`, `ping` ([`Request`]). Server to
//! client: `ok`, `from NAME TEXT`, `pong`, `challenge NONCE`, `error REASON [DETAIL]`
//! ([`Notice`]).

use alloc::vec::Vec;
use core::fmt;

/// The longest line, in bytes without its `\n`, either side sends (the server's `from NAME `
/// prefix may add up to [`MAX_NAME`] + 3 bytes to a forwarded `to` line's length).
pub const MAX_LINE: usize = 4096;
/// The longest name.
pub const MAX_NAME: usize = 64;

/// Whether `name` can be registered: 1 to [`MAX_NAME`] printable ASCII characters, no spaces.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}

/// One line cut from the stream by a [`LineSplitter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A line's bytes without its `\n` or `\r\n` (not necessarily UTF-8).
    Text(Vec<u8>),
    /// A line longer than the limit: reported once, and the rest of it is skipped.
    TooLong,
}

/// Cuts a byte stream into lines of at most `max` bytes, holding at most `max + 1` bytes of an
/// unfinished line plus one [`feed`](Self::feed). Feed it what the socket gave, then take
/// lines with [`poll_line`](Self::poll_line) until it says it needs more.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// Dropping the rest of an over-long line.
    skipping: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::with_capacity(512),
            max,
            skipping: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for lines not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete line, `Some(Line::TooLong)` once for a line past the limit, or `None`
    /// when more input is needed (a final line without `\n` at the end of the stream is never
    /// returned: the caller drops it).
    pub fn poll_line(&mut self) -> Option<Line> {
        loop {
            let Some(i) = self.buf.iter().position(|b| *b == b'\n') else {
                if self.buf.len() > self.max + 1 {
                    self.buf.clear();
                    if !core::mem::replace(&mut self.skipping, true) {
                        return Some(Line::TooLong);
                    }
                }
                return None;
            };
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            if core::mem::take(&mut self.skipping) {
                continue;
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.max {
                return Some(Line::TooLong);
            }
            return Some(Line::Text(line));
        }
    }
}

/// A line a client sends the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// An empty line (or one starting with a space): ignored.
    Empty,
    /// `ping`: the server answers `pong`.
    Ping,
    /// `register NAME [PROOF]`: the first word after `register`, and the rest when there is one
    /// (a server without a secret takes the whole rest as the name, so a proof there makes the
    /// name invalid).
    Register {
        /// The name asked for (not yet validated).
        name: &'a str,
        /// Everything after the name's space, if there is a space.
        proof: Option<&'a str>,
    },
    /// `to PEER TEXT`: forward TEXT to PEER.
    To {
        /// The recipient (not yet validated).
        peer: &'a str,
        /// The text, as it is.
        text: &'a str,
    },
    /// Any other command word.
    Unknown(&'a str),
}

impl<'a> Request<'a> {
    /// Parses one line (without its line ending). Never fails: every line is some request.
    pub fn parse(line: &'a str) -> Request<'a> {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "" => Request::Empty,
            "ping" => Request::Ping,
            "register" => {
                let (name, proof) = match rest.split_once(' ') {
                    Some((name, proof)) => (name, Some(proof)),
                    None => (rest, None),
                };
                Request::Register { name, proof }
            }
            "to" => {
                let (peer, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Request::To { peer, text }
            }
            other => Request::Unknown(other),
        }
    }
}

impl fmt::Display for Request<'_> {
    /// The line, without its `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Empty => Ok(()),
            Request::Ping => f.write_str("ping"),
            Request::Register { name, proof: None } => write!(f, "register {name}"),
            Request::Register {
                name,
                proof: Some(proof),
            } => write!(f, "register {name} {proof}"),
            Request::To { peer, text } => write!(f, "to {peer} {text}"),
            Request::Unknown(command) => f.write_str(command),
        }
    }
}

/// A line the server sends a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    /// `ok`: registered.
    Ok,
    /// `pong`: the answer to `ping`.
    Pong,
    /// `challenge NONCE`: prove the secret with this nonce.
    Challenge(&'a str),
    /// `from NAME TEXT`: a line another client sent us.
    From {
        /// Its sender.
        name: &'a str,
        /// The text, as it is.
        text: &'a str,
    },
    /// `error …`: the reason and any detail, as one string (`error` alone gives "").
    Error(&'a str),
    /// Anything else: a newer server's line this client does not know.
    Other(&'a str),
}

impl<'a> Notice<'a> {
    /// Parses one line (without its line ending). Never fails.
    pub fn parse(line: &'a str) -> Notice<'a> {
        if line == "ok" {
            return Notice::Ok;
        }
        if line == "pong" {
            return Notice::Pong;
        }
        if let Some(nonce) = line.strip_prefix("challenge ") {
            return Notice::Challenge(nonce);
        }
        if let Some(rest) = line.strip_prefix("from ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            return Notice::From { name, text };
        }
        if line == "error" {
            return Notice::Error("");
        }
        if let Some(reason) = line.strip_prefix("error ") {
            return Notice::Error(reason);
        }
        Notice::Other(line)
    }
}

impl fmt::Display for Notice<'_> {
    /// The line, without its `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Ok => f.write_str("ok"),
            Notice::Pong => f.write_str("pong"),
            Notice::Challenge(nonce) => write!(f, "challenge {nonce}"),
            Notice::From { name, text } => write!(f, "from {name} {text}"),
            Notice::Error("") => f.write_str("error"),
            Notice::Error(reason) => write!(f, "error {reason}"),
            Notice::Other(line) => f.write_str(line),
        }
    }
}
