//! ChannelData messages (RFC 8656 §12.4) and the framing of TURN over byte streams.
//!
//! A ChannelData message is a 4-byte header (channel number, length) and the application data.
//! Over UDP the datagram ends where the data does (padding is allowed but not needed); over TCP
//! and TLS the message is padded to a multiple of four so the next frame starts aligned (§12.5).
//! On a stream, STUN messages and ChannelData messages alternate with no other delimiter:
//! [`frame_len`] tells from the first four bytes how long the next frame is.

use crate::stun::HEADER_LEN;

/// Size of the ChannelData header: channel number and length.
pub const CHANNEL_HEADER_LEN: usize = 4;
/// The longest frame on a stream: a STUN header and a 65,532-byte body (the length field is
/// 16 bits and a multiple of 4), which bounds a stream reader's buffer.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + 0xFFFC;

/// A channel number: 0x4000 through 0x7FFF.
///
/// RFC 8656 §12 narrowed the range to 0x4000–0x4FFF and reserved the rest, but RFC 5766
/// clients still use it (coturn's `turnutils_uclient` binds 0x6E1C) and coturn accepts them, so
/// parsing accepts the old range; our client only ever picks from the new one
/// ([`ChannelNumber::MIN`]..=[`ChannelNumber::MAX`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    /// The lowest valid channel number.
    pub const MIN: ChannelNumber = ChannelNumber(0x4000);
    /// The highest channel number RFC 8656 allows (what our client picks from).
    pub const MAX: ChannelNumber = ChannelNumber(0x4FFF);
    /// The highest channel number RFC 5766 allowed (what servers accept).
    pub const MAX_LEGACY: ChannelNumber = ChannelNumber(0x7FFF);

    /// A channel number, or `None` outside 0x4000–0x7FFF.
    pub const fn new(n: u16) -> Option<Self> {
        if n >= 0x4000 && n <= 0x7FFF {
            Some(ChannelNumber(n))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

/// Why bytes are not a ChannelData message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Shorter than the 4-byte header.
    #[error("{0} bytes is shorter than a ChannelData header")]
    TooShort(usize),
    /// The first two bits are not 01 (RFC 7983).
    #[error("channel number {0:#06x} is outside 0x4000-0x7FFF")]
    BadChannel(u16),
    /// The length field claims more data than follows the header.
    #[error("length field says {declared} bytes but {actual} follow")]
    Truncated {
        /// What the header says.
        declared: usize,
        /// What follows the header.
        actual: usize,
    },
    /// The output buffer cannot hold the message.
    #[error("buffer of {available} bytes is too small for {needed}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The data is longer than the 16-bit length field can say.
    #[error("{0} bytes of data do not fit a ChannelData message")]
    TooLong(usize),
}

/// A borrowed ChannelData message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel.
    pub channel: ChannelNumber,
    /// The application data, without padding.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses one ChannelData message. Bytes after the data (padding) are ignored, as RFC 8656
    /// §12.5 asks of receivers on any transport.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ChannelError> {
        if bytes.len() < CHANNEL_HEADER_LEN {
            return Err(ChannelError::TooShort(bytes.len()));
        }
        let number = u16::from_be_bytes([bytes[0], bytes[1]]);
        let channel = ChannelNumber::new(number).ok_or(ChannelError::BadChannel(number))?;
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let actual = bytes.len() - CHANNEL_HEADER_LEN;
        if declared > actual {
            return Err(ChannelError::Truncated { declared, actual });
        }
        Ok(ChannelData {
            channel,
            data: &bytes[CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + declared],
        })
    }

    /// Encodes this message into `out` and returns its length; with `pad` (TCP and TLS) the
    /// message is zero-padded to a multiple of four.
    pub fn encode(&self, out: &mut [u8], pad: bool) -> Result<usize, ChannelError> {
        let len =
            u16::try_from(self.data.len()).map_err(|_| ChannelError::TooLong(self.data.len()))?;
        let body = CHANNEL_HEADER_LEN + self.data.len();
        let total = if pad { (body + 3) & !3 } else { body };
        if out.len() < total {
            return Err(ChannelError::BufferTooSmall {
                needed: total,
                available: out.len(),
            });
        }
        out[..2].copy_from_slice(&self.channel.get().to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out[CHANNEL_HEADER_LEN..body].copy_from_slice(self.data);
        out[body..total].fill(0);
        Ok(total)
    }

    /// Writes just the header for `data_len` bytes of data already at `out[4..]` (so callers
    /// can receive straight into the payload area), returning the padded length.
    pub fn encode_header(
        channel: ChannelNumber,
        data_len: usize,
        out: &mut [u8],
        pad: bool,
    ) -> Result<usize, ChannelError> {
        let len = u16::try_from(data_len).map_err(|_| ChannelError::TooLong(data_len))?;
        let body = CHANNEL_HEADER_LEN + data_len;
        let total = if pad { (body + 3) & !3 } else { body };
        if out.len() < total {
            return Err(ChannelError::BufferTooSmall {
                needed: total,
                available: out.len(),
            });
        }
        out[..2].copy_from_slice(&channel.get().to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out[body..total].fill(0);
        Ok(total)
    }
}

/// Whether bytes look like ChannelData: first two bits 01 (RFC 7983 demultiplexing).
pub fn looks_like_channel_data(bytes: &[u8]) -> bool {
    bytes.len() >= CHANNEL_HEADER_LEN && bytes[0] & 0xC0 == 0x40
}

/// The kind of the next frame on a TURN stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A STUN message of this many bytes.
    Stun(usize),
    /// A ChannelData message of this many bytes, padding included.
    ChannelData(usize),
}

impl Frame {
    /// The frame's length in bytes on the stream.
    pub const fn len(self) -> usize {
        match self {
            Frame::Stun(n) | Frame::ChannelData(n) => n,
        }
    }

    /// Whether the frame is empty (never: every frame has a header).
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Why a stream cannot be framed: the peer is not speaking TURN, and the connection should be
/// closed (there is no way to resynchronise a byte stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first two bits are neither 00 (STUN) nor 01 (ChannelData).
    #[error("first byte {0:#04x} starts neither STUN nor ChannelData")]
    UnknownFrame(u8),
    /// A STUN length that is not a multiple of four.
    #[error("STUN length {0} is not a multiple of 4")]
    UnalignedStun(usize),
    /// ChannelData on an invalid channel number.
    #[error("channel number {0:#06x} is outside 0x4000-0x7FFF")]
    BadChannel(u16),
}

/// The next frame at the start of a stream buffer, once its first four bytes have arrived
/// (`Ok(None)` before that). The frame is complete when the buffer holds `frame.len()` bytes;
/// it is never longer than [`MAX_FRAME_LEN`].
pub fn frame_len(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    match buf[0] & 0xC0 {
        0x00 => {
            if len % 4 != 0 {
                return Err(FrameError::UnalignedStun(len));
            }
            Ok(Some(Frame::Stun(HEADER_LEN + len)))
        }
        0x40 => {
            let number = u16::from_be_bytes([buf[0], buf[1]]);
            if ChannelNumber::new(number).is_none() {
                return Err(FrameError::BadChannel(number));
            }
            Ok(Some(Frame::ChannelData(
                (CHANNEL_HEADER_LEN + len + 3) & !3,
            )))
        }
        _ => Err(FrameError::UnknownFrame(buf[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_range_is_0x4000_to_0x7fff() {
        assert!(ChannelNumber::new(0x3FFF).is_none());
        assert!(ChannelNumber::new(0x4000).is_some());
        assert!(ChannelNumber::new(0x4FFF).is_some());
        assert!(ChannelNumber::new(0x6E1C).is_some());
        assert!(ChannelNumber::new(0x8000).is_none());
    }

    #[test]
    fn udp_is_unpadded_and_tcp_padded() {
        let ch = ChannelNumber::new(0x4001).expect("valid");
        let msg = ChannelData {
            channel: ch,
            data: b"hello",
        };
        let mut out = [0xAAu8; 16];
        assert_eq!(msg.encode(&mut out, false), Ok(9));
        assert_eq!(&out[..9], b"\x40\x01\x00\x05hello");
        let mut out = [0xAAu8; 16];
        assert_eq!(msg.encode(&mut out, true), Ok(12));
        assert_eq!(&out[..12], b"\x40\x01\x00\x05hello\0\0\0");
        assert_eq!(ChannelData::parse(&out[..12]), Ok(msg));
        assert_eq!(ChannelData::parse(&out[..9]), Ok(msg));
        assert_eq!(frame_len(&out), Ok(Some(Frame::ChannelData(12))));
        let aligned = ChannelData {
            channel: ch,
            data: b"abcd",
        };
        assert_eq!(aligned.encode(&mut out, true), Ok(8));
    }

    #[test]
    fn malformed_channel_data_is_a_typed_error() {
        assert_eq!(
            ChannelData::parse(b"\x40\x00\x00"),
            Err(ChannelError::TooShort(3))
        );
        assert_eq!(
            ChannelData::parse(b"\x40\x00\x00\x05abc"),
            Err(ChannelError::Truncated {
                declared: 5,
                actual: 3
            })
        );
        assert_eq!(
            ChannelData::parse(b"\x80\x00\x00\x00"),
            Err(ChannelError::BadChannel(0x8000))
        );
        assert_eq!(
            ChannelData::parse(b"\x40\x00\xff\xff"),
            Err(ChannelError::Truncated {
                declared: 0xffff,
                actual: 0
            })
        );
        let mut small = [0u8; 5];
        let msg = ChannelData {
            channel: ChannelNumber::MIN,
            data: b"hello",
        };
        assert!(matches!(
            msg.encode(&mut small, false),
            Err(ChannelError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn stream_frames_stun_and_channel_data() {
        assert_eq!(frame_len(b"\x00\x01\x00"), Ok(None));
        assert_eq!(frame_len(b"\x00\x01\x00\x08"), Ok(Some(Frame::Stun(28))));
        assert_eq!(
            frame_len(b"\x00\x01\x00\x07"),
            Err(FrameError::UnalignedStun(7))
        );
        assert_eq!(
            frame_len(b"\x80\x01\x00\x00"),
            Err(FrameError::UnknownFrame(0x80))
        );
        assert_eq!(
            frame_len(b"\x4f\xff\xff\xff"),
            Ok(Some(Frame::ChannelData(4 + 0x10000)))
        );
        assert_eq!(
            frame_len(b"\x00\x01\xff\xfc"),
            Ok(Some(Frame::Stun(MAX_FRAME_LEN)))
        );
    }
}
