//! TURN's framing on a byte stream (RFC 8656 §11.5, RFC 6062): STUN messages and ChannelData,
//! the latter padded to four bytes, back to back. Shared by the relay's TCP listener and the
//! client's TCP connection to a relay.

use std::io;

use holepunch_core::turn::channel::{MAX_FRAME_LEN, frame_len};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Splits a stream into whole TURN frames.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
    /// How much of `buf` holds received bytes.
    filled: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `reader` with room for the largest frame.
    pub fn new(reader: R) -> Self {
        FrameReader {
            reader,
            buf: vec![0u8; MAX_FRAME_LEN],
            start: 0,
            filled: 0,
        }
    }

    /// The next complete frame; `Ok(None)` at the end of the stream, `InvalidData` when the
    /// bytes are not TURN framing (the stream cannot be resynchronised: close it).
    pub async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match frame_len(&self.buf[self.start..self.filled]) {
                Ok(Some(frame)) if self.filled - self.start >= frame.len() => {
                    let data = self.buf[self.start..self.start + frame.len()].to_vec();
                    self.start += frame.len();
                    return Ok(Some(data));
                }
                Ok(_) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            // Keep the partial frame at the front, then read more after it.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            match self.reader.read(&mut self.buf[self.filled..]).await? {
                0 => return Ok(None),
                n => self.filled += n,
            }
        }
    }
}
