//! A small, bounded DNS codec (RFC 1035): build one query, read the answer section of its
//! response.
//!
//! Just enough DNS for NAT64 prefix discovery (RFC 7050), which asks one resolver for one AAAA
//! record set. Everything arriving is untrusted: names are followed through compression pointers
//! only backwards and only a bounded number of times, counts are checked against what the message
//! could possibly hold before anything is walked, and every malformation is a typed
//! [`DnsError`]. Nothing allocates: the parsed [`Response`] borrows the message.

use core::net::Ipv6Addr;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// The largest message accepted: a UDP answer without EDNS is at most 512 bytes; TCP answers may
/// be longer, but nothing NAT64 discovery needs comes near this.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The most records accepted in the answer section.
pub const MAX_ANSWERS: u16 = 64;
/// The longest name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The most compression pointers followed while reading one name.
pub const MAX_POINTER_HOPS: usize = 16;
/// The smallest possible resource record: a root name (1), type, class, TTL, RDLENGTH (10).
const MIN_RECORD_LEN: usize = 11;

/// Record type AAAA (RFC 3596).
pub const TYPE_AAAA: u16 = 28;
/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Class IN, the only one this codec speaks.
pub const CLASS_IN: u16 = 1;

/// What is wrong with a query to build or a response received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The message ends inside a field that starts at `at`.
    #[error("message truncated at offset {at}")]
    Truncated {
        /// Offset of the field that runs past the end.
        at: usize,
    },
    /// Longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE_LEN} accepted")]
    TooLong(usize),
    /// The server set TC: the answer did not fit and the rest must be asked for over TCP.
    #[error("the server truncated its answer (TC bit)")]
    TruncatedAnswer,
    /// A query, not a response (QR bit clear).
    #[error("message is a query, not a response")]
    NotAResponse,
    /// The id does not match the query's: not the answer to our question.
    #[error("response id {got:#06x} does not match query id {expected:#06x}")]
    IdMismatch {
        /// The query's id.
        expected: u16,
        /// The response's id.
        got: u16,
    },
    /// An opcode other than QUERY.
    #[error("unexpected opcode {0}")]
    Opcode(u8),
    /// The server answered with an error RCODE (3 is NXDOMAIN).
    #[error("server answered with rcode {0}")]
    Rcode(u8),
    /// The question section does not hold exactly the question asked.
    #[error("the question section does not echo the query")]
    QuestionMismatch,
    /// A count the message cannot possibly hold, or more answers than accepted.
    #[error("{count} records claimed, at most {max} possible or accepted")]
    HugeCount {
        /// The claimed count.
        count: u16,
        /// The most the message could hold or this codec accepts.
        max: u16,
    },
    /// A compression pointer that does not point strictly backwards, or too many of them.
    #[error("compression pointer loop at offset {at}")]
    CompressionLoop {
        /// Offset of the offending pointer.
        at: usize,
    },
    /// A name longer than 255 bytes in wire form.
    #[error("name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// A label type other than a plain label or a pointer (0x40/0x80 prefixes, RFC 6891 §5).
    #[error("unsupported label type {0:#04x}")]
    BadLabel(u8),
    /// An answer record of a class other than IN.
    #[error("record of class {0}, expected IN")]
    WrongClass(u16),
    /// A record whose RDATA length does not fit its type (AAAA must be 16 bytes).
    #[error("record of type {rtype} with {len} bytes of data")]
    BadRdataLength {
        /// The record type.
        rtype: u16,
        /// Its RDLENGTH.
        len: u16,
    },
    /// A query name that is empty, has an empty or over-long label, or a byte outside
    /// letters, digits, `-` and `_`.
    #[error("invalid query name")]
    InvalidName,
    /// The output buffer is too small for the query.
    #[error("buffer too small: need {needed} bytes")]
    BufferTooSmall {
        /// Bytes the query needs.
        needed: usize,
    },
}

/// Writes a recursive query for `name` and `qtype` (class IN) into `out`; returns its length.
///
/// `name` is dotted text (a trailing dot is allowed); labels must be 1–63 bytes of letters,
/// digits, `-` or `_`, and the whole name at most 255 bytes in wire form.
pub fn build_query(out: &mut [u8], id: u16, name: &str, qtype: u16) -> Result<usize, DnsError> {
    let wire_len = name_wire_len(name)?;
    let needed = HEADER_LEN + wire_len + 4;
    if out.len() < needed {
        return Err(DnsError::BufferTooSmall { needed });
    }
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    header.copy_from_slice(&[0; HEADER_LEN]);
    header[0..2].copy_from_slice(&id.to_be_bytes());
    header[2] = 0x01; // RD: ask the resolver to recurse, DNS64 lives there
    header[4..6].copy_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    let mut at = 0;
    for label in labels(name) {
        rest[at] = label.len() as u8; // checked ≤ 63 by name_wire_len
        rest[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    rest[at] = 0;
    rest[at + 1..at + 3].copy_from_slice(&qtype.to_be_bytes());
    rest[at + 3..at + 5].copy_from_slice(&CLASS_IN.to_be_bytes());
    Ok(needed)
}

/// A validated response to one query; iterate its answers with [`Response::answers`].
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    msg: &'a [u8],
    answers_start: usize,
    answer_count: u16,
}

/// One answer record; `rdata` borrows the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record type.
    pub rtype: u16,
    /// Time to live, in seconds.
    pub ttl: u32,
    /// The record data, exactly RDLENGTH bytes.
    pub rdata: &'a [u8],
}

impl Record<'_> {
    /// The address of an AAAA record; `None` for other types (length checked at parse).
    pub fn aaaa(&self) -> Option<Ipv6Addr> {
        if self.rtype != TYPE_AAAA {
            return None;
        }
        let bytes: [u8; 16] = self.rdata.try_into().ok()?;
        Some(Ipv6Addr::from(bytes))
    }
}

impl<'a> Response<'a> {
    /// Checks `msg` is the response to the query `id` for `name`/`qtype` and that its answer
    /// section is well formed. Authority and additional sections are not read.
    pub fn parse(msg: &'a [u8], id: u16, name: &str, qtype: u16) -> Result<Self, DnsError> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(DnsError::TooLong(msg.len()));
        }
        let header: &[u8; HEADER_LEN] = msg
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DnsError::Truncated { at: 0 })?;
        let got = u16::from_be_bytes([header[0], header[1]]);
        if header[2] & 0x80 == 0 {
            return Err(DnsError::NotAResponse);
        }
        if got != id {
            return Err(DnsError::IdMismatch { expected: id, got });
        }
        let opcode = (header[2] >> 3) & 0x0f;
        if opcode != 0 {
            return Err(DnsError::Opcode(opcode));
        }
        if header[2] & 0x02 != 0 {
            return Err(DnsError::TruncatedAnswer);
        }
        let rcode = header[3] & 0x0f;
        if rcode != 0 {
            return Err(DnsError::Rcode(rcode));
        }
        let qdcount = u16::from_be_bytes([header[4], header[5]]);
        let ancount = u16::from_be_bytes([header[6], header[7]]);
        if qdcount != 1 {
            return Err(DnsError::QuestionMismatch);
        }

        // The question: the name we asked, our type, class IN.
        let mut matches = NameMatcher::new(name);
        let after_name = read_name(msg, HEADER_LEN, |label| matches.feed(label))?;
        let fixed = msg
            .get(after_name..after_name + 4)
            .ok_or(DnsError::Truncated { at: after_name })?;
        if !matches.finish()
            || u16::from_be_bytes([fixed[0], fixed[1]]) != qtype
            || u16::from_be_bytes([fixed[2], fixed[3]]) != CLASS_IN
        {
            return Err(DnsError::QuestionMismatch);
        }
        let answers_start = after_name + 4;

        // Refuse counts the message cannot hold before walking anything.
        let room = (msg.len() - answers_start) / MIN_RECORD_LEN;
        let max = MAX_ANSWERS.min(u16::try_from(room).unwrap_or(u16::MAX));
        if ancount > max {
            return Err(DnsError::HugeCount {
                count: ancount,
                max,
            });
        }
        let response = Response {
            msg,
            answers_start,
            answer_count: ancount,
        };
        // Validate every answer now, so iteration cannot fail later.
        let mut at = answers_start;
        for _ in 0..ancount {
            let (_, next) = read_record(msg, at)?;
            at = next;
        }
        Ok(response)
    }

    /// How many records the answer section holds.
    pub fn answer_count(&self) -> u16 {
        self.answer_count
    }

    /// The answer records, in order (all validated by [`Response::parse`]).
    pub fn answers(&self) -> Answers<'a> {
        Answers {
            msg: self.msg,
            at: self.answers_start,
            left: self.answer_count,
        }
    }
}

/// Iterator over a [`Response`]'s answer records.
#[derive(Clone, Debug)]
pub struct Answers<'a> {
    msg: &'a [u8],
    at: usize,
    left: u16,
}

impl<'a> Iterator for Answers<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Already validated; an error here would mean the message changed, so just stop.
        let (record, next) = read_record(self.msg, self.at).ok()?;
        self.at = next;
        Some(record)
    }
}

/// Reads the resource record at `at`; returns it and the offset after it.
fn read_record(msg: &[u8], at: usize) -> Result<(Record<'_>, usize), DnsError> {
    let after_name = read_name(msg, at, |_| {})?;
    let fixed = msg
        .get(after_name..after_name + 10)
        .ok_or(DnsError::Truncated { at: after_name })?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let len = u16::from_be_bytes([fixed[8], fixed[9]]);
    let data_at = after_name + 10;
    let rdata = msg
        .get(data_at..data_at + usize::from(len))
        .ok_or(DnsError::Truncated { at: data_at })?;
    if class != CLASS_IN {
        return Err(DnsError::WrongClass(class));
    }
    let expected = match rtype {
        TYPE_AAAA => Some(16),
        TYPE_A => Some(4),
        _ => None,
    };
    if expected.is_some_and(|e| e != len) {
        return Err(DnsError::BadRdataLength { rtype, len });
    }
    Ok((Record { rtype, ttl, rdata }, data_at + usize::from(len)))
}

/// Reads the (possibly compressed) name at `start`, handing each label to `visit`; returns the
/// offset just after the name's bytes at `start` (after the first pointer, if any).
///
/// Every pointer must point strictly before the label sequence it interrupts, so the walk always
/// moves backwards and ends; [`MAX_POINTER_HOPS`] bounds it further.
fn read_name(msg: &[u8], start: usize, mut visit: impl FnMut(&[u8])) -> Result<usize, DnsError> {
    let mut at = start;
    let mut floor = start; // pointers must land before this
    let mut end = None; // where the name ends at `start`, fixed at the first pointer
    let mut wire_len = 0usize;
    let mut hops = 0usize;
    loop {
        let len = *msg.get(at).ok_or(DnsError::Truncated { at })?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                wire_len += 1;
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                return Ok(end.unwrap_or(at + 1));
            }
            0x00 => {
                let label = msg
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(DnsError::Truncated { at })?;
                wire_len += 1 + label.len();
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                visit(label);
                at += 1 + label.len();
            }
            0xc0 => {
                let low = *msg.get(at + 1).ok_or(DnsError::Truncated { at })?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                hops += 1;
                if target >= floor || target < HEADER_LEN || hops > MAX_POINTER_HOPS {
                    return Err(DnsError::CompressionLoop { at });
                }
                end.get_or_insert(at + 2);
                floor = target;
                at = target;
            }
            other => return Err(DnsError::BadLabel(other)),
        }
    }
}

/// Compares labels read from the wire with a dotted name, ASCII case-insensitively.
struct NameMatcher<'n> {
    rest: core::str::Split<'n, char>,
    ok: bool,
}

impl<'n> NameMatcher<'n> {
    fn new(name: &'n str) -> Self {
        NameMatcher {
            rest: name.strip_suffix('.').unwrap_or(name).split('.'),
            ok: true,
        }
    }

    fn feed(&mut self, label: &[u8]) {
        let want = self.rest.next();
        self.ok &= want.is_some_and(|w| w.as_bytes().eq_ignore_ascii_case(label));
    }

    fn finish(mut self) -> bool {
        self.ok && self.rest.next().is_none()
    }
}

/// The non-empty labels of a dotted name (a trailing dot marks the root and is dropped).
fn labels(name: &str) -> impl Iterator<Item = &str> {
    name.strip_suffix('.').unwrap_or(name).split('.')
}

/// Wire length of `name`, checking every label.
fn name_wire_len(name: &str) -> Result<usize, DnsError> {
    let mut len = 1; // the root label
    for label in labels(name) {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(DnsError::InvalidName);
        }
        len += 1 + label.len();
    }
    if len > MAX_NAME_LEN {
        return Err(DnsError::InvalidName);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    const NAME: &str = "ipv4only.arpa";

    /// A response to query 0xbeef for ipv4only.arpa AAAA with the given answer records (each
    /// a compressed pointer to the question name, then `rtype`, `class`, TTL 60 and `rdata`).
    fn response(answers: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; 64];
        let len = build_query(&mut m, 0xbeef, NAME, TYPE_AAAA).expect("query builds");
        m.truncate(len);
        m[2] |= 0x80; // QR
        m[3] = 0x80; // RA
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for (rtype, class, rdata) in answers {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&class.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    use alloc::vec;
    use alloc::vec::Vec;

    fn wka6() -> [u8; 16] {
        "64:ff9b::192.0.0.170"
            .parse::<Ipv6Addr>()
            .expect("addr")
            .octets()
    }

    #[test]
    fn query_bytes_are_rfc1035() {
        let mut out = [0u8; 64];
        let len = build_query(&mut out, 0x1234, "ipv4only.arpa.", TYPE_AAAA).expect("builds");
        let expected: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x08ipv4only\x04arpa\x00\x00\x1c\x00\x01";
        assert_eq!(&out[..len], expected);
        assert_eq!(
            build_query(&mut out[..10], 1, NAME, TYPE_AAAA),
            Err(DnsError::BufferTooSmall { needed: 31 })
        );
        for bad in ["", "a..b", "bad name", ".", &String::from("x").repeat(64)] {
            assert_eq!(
                build_query(&mut out, 1, bad, TYPE_AAAA),
                Err(DnsError::InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parses_aaaa_answers_and_skips_other_types() {
        let wka = wka6();
        let m = response(&[
            (TYPE_CNAME, CLASS_IN, &[0xc0, 12]),
            (TYPE_AAAA, CLASS_IN, &wka),
        ]);
        let r = Response::parse(&m, 0xbeef, "IPV4ONLY.arpa", TYPE_AAAA).expect("parses");
        assert_eq!(r.answer_count(), 2);
        let addrs: Vec<_> = r.answers().filter_map(|a| a.aaaa()).collect();
        assert_eq!(addrs, [Ipv6Addr::from(wka)]);
    }

    #[test]
    fn header_checks() {
        let m = response(&[]);
        assert_eq!(
            Response::parse(&m, 0xbeee, NAME, TYPE_AAAA).err(),
            Some(DnsError::IdMismatch {
                expected: 0xbeee,
                got: 0xbeef
            })
        );
        assert_eq!(
            Response::parse(&m, 0xbeef, "ipv4only.arpa.x", TYPE_AAAA).err(),
            Some(DnsError::QuestionMismatch)
        );
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_A).err(),
            Some(DnsError::QuestionMismatch)
        );
        let mut q = m.clone();
        q[2] &= !0x80;
        assert_eq!(
            Response::parse(&q, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::NotAResponse)
        );
        let mut tc = m.clone();
        tc[2] |= 0x02;
        assert_eq!(
            Response::parse(&tc, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::TruncatedAnswer)
        );
        let mut nx = m.clone();
        nx[3] |= 3;
        assert_eq!(
            Response::parse(&nx, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::Rcode(3))
        );
    }

    #[test]
    fn truncated_messages_are_typed_errors_at_every_length() {
        let wka = wka6();
        let m = response(&[(TYPE_AAAA, CLASS_IN, &wka)]);
        for len in 0..m.len() {
            let err = Response::parse(&m[..len], 0xbeef, NAME, TYPE_AAAA).err();
            assert!(
                matches!(
                    err,
                    Some(DnsError::Truncated { .. } | DnsError::HugeCount { .. })
                ),
                "{len}: {err:?}"
            );
        }
    }

    #[test]
    fn wrong_class_and_bad_lengths() {
        let wka = wka6();
        let m = response(&[(TYPE_AAAA, 3, &wka)]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::WrongClass(3))
        );
        let m = response(&[(TYPE_AAAA, CLASS_IN, &wka[..15])]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::BadRdataLength {
                rtype: TYPE_AAAA,
                len: 15
            })
        );
    }

    #[test]
    fn huge_counts_are_refused_before_walking() {
        let mut m = response(&[]);
        m[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::HugeCount {
                count: u16::MAX,
                max: 0
            })
        );
        let wka = wka6();
        let many: Vec<(u16, u16, &[u8])> = (0..MAX_ANSWERS + 1)
            .map(|_| (TYPE_AAAA, CLASS_IN, &wka[..]))
            .collect();
        let m = response(&many);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::HugeCount {
                count: MAX_ANSWERS + 1,
                max: MAX_ANSWERS
            })
        );
    }

    #[test]
    fn compression_loops_and_forward_pointers_are_refused() {
        let wka = wka6();
        let mut m = response(&[(TYPE_AAAA, CLASS_IN, &wka)]);
        let answer = m.len() - 28;
        // A pointer to itself.
        m[answer..answer + 2].copy_from_slice(&[0xc0 | (answer >> 8) as u8, answer as u8]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::CompressionLoop { at: answer })
        );
        // A pointer into the header.
        m[answer..answer + 2].copy_from_slice(&[0xc0, 2]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::CompressionLoop { at: answer })
        );
        // Two names pointing at each other: the question name becomes a pointer to the answer.
        let mut m = response(&[(TYPE_AAAA, CLASS_IN, &wka)]);
        m[12..14].copy_from_slice(&[0xc0, answer as u8]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::CompressionLoop { at: 12 })
        );
    }

    #[test]
    fn extended_label_types_are_refused() {
        let mut m = response(&[]);
        m[12] = 0x41;
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::BadLabel(0x40))
        );
    }

    #[test]
    fn long_names_are_refused() {
        // A question of many 63-byte labels: longer than 255 in wire form.
        let mut m = response(&[]);
        m.truncate(HEADER_LEN);
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.extend_from_slice(&[0, 0, 28, 0, 1]);
        assert_eq!(
            Response::parse(&m, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::NameTooLong)
        );
        let mut big = vec![0u8; MAX_MESSAGE_LEN + 1];
        big[..HEADER_LEN].copy_from_slice(&m[..HEADER_LEN]);
        assert_eq!(
            Response::parse(&big, 0xbeef, NAME, TYPE_AAAA).err(),
            Some(DnsError::TooLong(MAX_MESSAGE_LEN + 1))
        );
    }
}
