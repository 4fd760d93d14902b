//! HTTP/1.1 response framing for the description and SOAP exchanges, with `httparse`.
//!
//! The driver reads from the TCP connection until [`read_response`] stops returning
//! [`UpnpError::Incomplete`] (or the peer closes, then it calls [`read_response_at_eof`]); both
//! refuse anything larger than the caller's limit.

use alloc::vec::Vec;

use super::UpnpError;

/// The most headers accepted in one response.
const MAX_HEADERS: usize = 32;

/// A complete HTTP response: status and de-chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked if it was chunked.
    pub body: Vec<u8>,
}

/// Parses `buf` as a complete response of at most `max` bytes.
///
/// [`UpnpError::Incomplete`] means read more; the body must be delimited by Content-Length or
/// chunked encoding (a body delimited by connection close needs [`read_response_at_eof`]).
pub fn read_response(buf: &[u8], max: usize) -> Result<HttpResponse, UpnpError> {
    read(buf, max, false)
}

/// Like [`read_response`], after the peer closed the connection: a body without Content-Length
/// or chunking runs to the end of `buf`.
pub fn read_response_at_eof(buf: &[u8], max: usize) -> Result<HttpResponse, UpnpError> {
    read(buf, max, true)
}

fn read(buf: &[u8], max: usize, eof: bool) -> Result<HttpResponse, UpnpError> {
    if buf.len() > max {
        return Err(UpnpError::TooLarge {
            len: buf.len(),
            max,
        });
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(UpnpError::Incomplete),
        Err(_) => return Err(UpnpError::Http),
    };
    let status = resp.code.ok_or(UpnpError::Http)?;
    let mut content_length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = core::str::from_utf8(h.value).map_err(|_| UpnpError::Http)?;
            let n: usize = v.trim().parse().map_err(|_| UpnpError::Http)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(UpnpError::Http);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    let rest = &buf[head_len..];
    let body = if chunked {
        dechunk(rest, max)?
    } else if let Some(n) = content_length {
        if n > max {
            return Err(UpnpError::TooLarge { len: n, max });
        }
        rest.get(..n).ok_or(UpnpError::Incomplete)?.to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Err(UpnpError::Incomplete);
    };
    Ok(HttpResponse { status, body })
}

/// Decodes a chunked body (chunk sizes by `httparse::parse_chunk_size`).
fn dechunk(mut rest: &[u8], max: usize) -> Result<Vec<u8>, UpnpError> {
    let mut body = Vec::new();
    // Each chunk consumes at least 3 bytes, so this many iterations always suffice.
    for _ in 0..=rest.len() {
        let (skip, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Err(UpnpError::Incomplete),
            Err(_) => return Err(UpnpError::Http),
        };
        let size = usize::try_from(size).map_err(|_| UpnpError::Http)?;
        if size > max || body.len() + size > max {
            return Err(UpnpError::TooLarge {
                len: body.len().saturating_add(size),
                max,
            });
        }
        rest = &rest[skip..];
        if size == 0 {
            // Trailers are not used by UPnP; the body is complete.
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or(UpnpError::Incomplete)?;
        body.extend_from_slice(chunk);
        rest = &rest[size..];
        match rest.get(..2) {
            Some(b"\r\n") => rest = &rest[2..],
            Some(_) => return Err(UpnpError::Http),
            None => return Err(UpnpError::Incomplete),
        }
    }
    Err(UpnpError::Http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_chunked_and_eof_bodies() {
        let r = read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100)
            .expect("complete");
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        assert_eq!(
            read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 100),
            Err(UpnpError::Incomplete)
        );
        let chunked = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\nRust\r\n3\r\n!!!\r\n0\r\n\r\n";
        let r = read_response(chunked, 200).expect("complete");
        assert_eq!((r.status, &r.body[..]), (500, &b"Rust!!!"[..]));
        let eof = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(read_response(eof, 100), Err(UpnpError::Incomplete));
        assert_eq!(
            read_response_at_eof(eof, 100).expect("eof").body,
            b"all of it"
        );
    }

    #[test]
    fn oversized_and_malformed_responses_are_refused() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n";
        assert_eq!(
            read_response(big, 65536),
            Err(UpnpError::TooLarge {
                len: 10_485_760,
                max: 65536
            })
        );
        assert!(matches!(
            read_response(&[b'x'; 70000], 65536),
            Err(UpnpError::TooLarge { .. })
        ));
        let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA00000\r\n";
        assert!(matches!(
            read_response(huge_chunk, 65536),
            Err(UpnpError::TooLarge { .. })
        ));
        assert_eq!(
            read_response(b"NOT HTTP\r\n\r\n", 100),
            Err(UpnpError::Http)
        );
        assert_eq!(
            read_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                100
            ),
            Err(UpnpError::Http)
        );
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n";
        assert_eq!(read_response(bad_chunk, 100), Err(UpnpError::Http));
    }
}
