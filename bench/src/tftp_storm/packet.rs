//! The client side of the TFTP wire format (RFC 1350, options RFC 2347/2348/2349/7440): read
//! requests and ACKs out, DATA/OACK/ERROR in. Pure, and independent of netbootd's codec.
//!
//! Incoming packets are decoded from their first bytes and their real length, so the driver
//! can receive DATA with `MSG_TRUNC` into a small buffer: the payload is counted, never copied.

/// Read request.
pub const OP_RRQ: u16 = 1;
/// Data block.
pub const OP_DATA: u16 = 3;
/// Acknowledgement.
pub const OP_ACK: u16 = 4;
/// Error.
pub const OP_ERROR: u16 = 5;
/// Option acknowledgement.
pub const OP_OACK: u16 = 6;

/// The options a read request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// `blksize` (RFC 2348); `None` leaves the default 512.
    pub blksize: Option<u16>,
    /// `windowsize` (RFC 7440); `None` leaves the default 1.
    pub windowsize: Option<u16>,
    /// Ask for `tsize` (RFC 2349) so the transfer's length can be checked.
    pub tsize: bool,
}

impl RequestOptions {
    /// No options at all: a plain RFC 1350 request.
    pub const NONE: Self = Self {
        blksize: None,
        windowsize: None,
        tsize: false,
    };
}

/// An octet-mode read request for `file` with `opts`.
pub fn encode_rrq(file: &str, opts: &RequestOptions) -> Vec<u8> {
    let mut p = OP_RRQ.to_be_bytes().to_vec();
    let mut field = |s: &str| {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    };
    field(file);
    field("octet");
    if let Some(b) = opts.blksize {
        field("blksize");
        field(&b.to_string());
    }
    if let Some(w) = opts.windowsize {
        field("windowsize");
        field(&w.to_string());
    }
    if opts.tsize {
        field("tsize");
        field("0");
    }
    p
}

/// An ACK of `block`.
pub fn encode_ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    let op = OP_ACK.to_be_bytes();
    [op[0], op[1], b[0], b[1]]
}

/// The options a server granted in its OACK (those it left out are `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Granted {
    /// Granted `blksize`.
    pub blksize: Option<u16>,
    /// Granted `windowsize`.
    pub windowsize: Option<u16>,
    /// The file's length (`tsize`).
    pub tsize: Option<u64>,
}

/// A decoded server packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// DATA `block` carrying `len` payload bytes.
    Data {
        /// Block number.
        block: u16,
        /// Payload length.
        len: usize,
    },
    /// OACK.
    Oack(Granted),
    /// ERROR.
    Error {
        /// Error code.
        code: u16,
        /// Message (possibly cut short by the receive buffer).
        message: String,
    },
    /// Anything a server should not send a reader, or an undecodable OACK.
    Other,
}

/// Decodes a datagram of `len` bytes whose first bytes are `head` (`head.len() <= len`).
pub fn decode(head: &[u8], len: usize) -> Incoming {
    if head.len() < 4 || len < 4 {
        return Incoming::Other;
    }
    let op = u16::from_be_bytes([head[0], head[1]]);
    let arg = u16::from_be_bytes([head[2], head[3]]);
    match op {
        OP_DATA => Incoming::Data {
            block: arg,
            len: len - 4,
        },
        OP_ERROR => {
            let text = head[4..].split(|&b| b == 0).next().unwrap_or(&[]);
            Incoming::Error {
                code: arg,
                message: String::from_utf8_lossy(text).into_owned(),
            }
        }
        OP_OACK => decode_oack(&head[2..]).map_or(Incoming::Other, Incoming::Oack),
        _ => Incoming::Other,
    }
}

/// `name NUL value NUL …`; unknown options are ignored, malformed values refused.
fn decode_oack(mut rest: &[u8]) -> Option<Granted> {
    let mut g = Granted::default();
    let next = |rest: &mut &[u8]| -> Option<String> {
        let end = rest.iter().position(|&b| b == 0)?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        *rest = &rest[end + 1..];
        Some(s)
    };
    while !rest.is_empty() {
        let name = next(&mut rest)?.to_ascii_lowercase();
        let value = next(&mut rest)?;
        match name.as_str() {
            "blksize" => g.blksize = Some(value.parse().ok()?),
            "windowsize" => g.windowsize = Some(value.parse().ok()?),
            "tsize" => g.tsize = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_acks() {
        let all = RequestOptions {
            blksize: Some(1468),
            windowsize: Some(16),
            tsize: true,
        };
        assert_eq!(
            encode_rrq("boot/x", &all),
            b"\x00\x01boot/x\0octet\0blksize\x001468\0windowsize\x0016\0tsize\x000\0".to_vec()
        );
        assert_eq!(
            encode_rrq("f", &RequestOptions::NONE),
            b"\x00\x01f\0octet\0".to_vec()
        );
        assert_eq!(encode_ack(0x0102), [0, 4, 1, 2]);
    }

    #[test]
    fn server_packets() {
        assert_eq!(
            decode(&[0, 3, 0xff, 0xff], 1472),
            Incoming::Data {
                block: 65535,
                len: 1468
            }
        );
        assert_eq!(
            decode(b"\x00\x06blksize\x001468\0TSIZE\x00123\0foo\0bar\0", 38),
            Incoming::Oack(Granted {
                blksize: Some(1468),
                windowsize: None,
                tsize: Some(123)
            })
        );
        assert_eq!(decode(b"\x00\x06blksize\x00x\0", 14), Incoming::Other);
        assert_eq!(decode(b"\x00\x06blksize\x00", 11), Incoming::Other);
        assert_eq!(
            decode(b"\x00\x05\x00\x01no such file\0", 17),
            Incoming::Error {
                code: 1,
                message: "no such file".into()
            }
        );
        assert_eq!(decode(&[0, 4, 0, 1], 4), Incoming::Other);
        assert_eq!(decode(&[0, 3], 2), Incoming::Other);
    }
}
