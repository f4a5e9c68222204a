//! TFTP packets on the wire (RFC 1350, options RFC 2347): parse and emit.
//!
//! Parsing never panics and allocates at most in proportion to the datagram. Request modes
//! and option names are case-insensitive and returned lowercased; option order is kept.

use super::Mode;

/// Opcode of a read request.
pub const OP_RRQ: u16 = 1;
/// Opcode of a write request.
pub const OP_WRQ: u16 = 2;
/// Opcode of a data packet.
pub const OP_DATA: u16 = 3;
/// Opcode of an acknowledgement.
pub const OP_ACK: u16 = 4;
/// Opcode of an error packet.
pub const OP_ERROR: u16 = 5;
/// Opcode of an option acknowledgement (RFC 2347).
pub const OP_OACK: u16 = 6;

/// Most options kept from one request; a request with more is malformed.
pub const MAX_OPTIONS: usize = 32;

/// TFTP error codes (RFC 1350, RFC 2347).
pub mod code {
    /// Not defined, see the message.
    pub const NOT_DEFINED: u16 = 0;
    /// File not found.
    pub const FILE_NOT_FOUND: u16 = 1;
    /// Access violation.
    pub const ACCESS_VIOLATION: u16 = 2;
    /// Disk full or allocation exceeded.
    pub const DISK_FULL: u16 = 3;
    /// Illegal TFTP operation.
    pub const ILLEGAL_OPERATION: u16 = 4;
    /// Unknown transfer ID.
    pub const UNKNOWN_TID: u16 = 5;
    /// File already exists.
    pub const FILE_EXISTS: u16 = 6;
    /// No such user.
    pub const NO_SUCH_USER: u16 = 7;
    /// Option negotiation refused (RFC 2347).
    pub const OPTIONS_REFUSED: u16 = 8;
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its fixed fields.
    #[error("packet truncated")]
    Truncated,
    /// An opcode outside 1–6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string field without its terminating NUL.
    #[error("string field not NUL-terminated")]
    MissingNul,
    /// More than [`MAX_OPTIONS`] options.
    #[error("too many options")]
    TooManyOptions,
    /// Bytes after the end of an ACK or ERROR.
    #[error("trailing bytes")]
    Trailing,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// File name as sent (not normalised, may be any bytes but NUL).
    pub filename: Vec<u8>,
    /// Mode, ASCII-lowercased (`octet`, `netascii`, `mail`, …).
    pub mode: Vec<u8>,
    /// Options in request order: (name ASCII-lowercased, value).
    pub options: Vec<(String, String)>,
}

impl Request {
    /// The mode, if it is one we serve.
    pub fn served_mode(&self) -> Option<Mode> {
        match self.mode.as_slice() {
            b"octet" => Some(Mode::Octet),
            b"netascii" => Some(Mode::Netascii),
            _ => None,
        }
    }
}

/// A TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request.
    Rrq(Request),
    /// Write request.
    Wrq(Request),
    /// Data block.
    Data {
        /// Block number.
        block: u16,
        /// Payload.
        data: Vec<u8>,
    },
    /// Acknowledgement.
    Ack {
        /// Block number.
        block: u16,
    },
    /// Error.
    Error {
        /// Error code (see [`code`]).
        code: u16,
        /// Message (lossily decoded; the terminating NUL may be missing on the wire).
        message: String,
    },
    /// Option acknowledgement: (name, value) in order.
    Oack {
        /// Acknowledged options.
        options: Vec<(String, String)>,
    },
}

/// Split `bytes` at the first NUL: (before, after).
fn take_cstr(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::MissingNul)?;
    Ok((&bytes[..end], &bytes[end + 1..]))
}

/// Parse (name, value) option pairs. A trailing fragment (a name without value, or bytes
/// without a final NUL, as some boot ROMs pad requests) is ignored; so are empty names.
fn parse_options(mut rest: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let mut options = Vec::new();
    while let Ok((name, after)) = take_cstr(rest) {
        let Ok((value, after)) = take_cstr(after) else {
            break;
        };
        rest = after;
        if name.is_empty() {
            continue;
        }
        if options.len() == MAX_OPTIONS {
            return Err(WireError::TooManyOptions);
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        options.push((name, String::from_utf8_lossy(value).into_owned()));
    }
    Ok(options)
}

fn parse_request(body: &[u8]) -> Result<Request, WireError> {
    let (filename, rest) = take_cstr(body)?;
    let (mode, rest) = take_cstr(rest)?;
    Ok(Request {
        filename: filename.to_vec(),
        mode: mode.to_ascii_lowercase(),
        options: parse_options(rest)?,
    })
}

/// Parse one datagram.
pub fn parse(bytes: &[u8]) -> Result<Packet, WireError> {
    let [a, b, body @ ..] = bytes else {
        return Err(WireError::Truncated);
    };
    let opcode = u16::from_be_bytes([*a, *b]);
    match opcode {
        OP_RRQ => Ok(Packet::Rrq(parse_request(body)?)),
        OP_WRQ => Ok(Packet::Wrq(parse_request(body)?)),
        OP_DATA => {
            let [x, y, data @ ..] = body else {
                return Err(WireError::Truncated);
            };
            Ok(Packet::Data {
                block: u16::from_be_bytes([*x, *y]),
                data: data.to_vec(),
            })
        }
        OP_ACK => match body {
            [x, y] => Ok(Packet::Ack {
                block: u16::from_be_bytes([*x, *y]),
            }),
            [_, _, ..] => Err(WireError::Trailing),
            _ => Err(WireError::Truncated),
        },
        OP_ERROR => {
            let [x, y, rest @ ..] = body else {
                return Err(WireError::Truncated);
            };
            // Lenient: a message without its NUL is taken whole.
            let message = match take_cstr(rest) {
                Ok((m, _)) => m,
                Err(_) => rest,
            };
            Ok(Packet::Error {
                code: u16::from_be_bytes([*x, *y]),
                message: String::from_utf8_lossy(message).into_owned(),
            })
        }
        OP_OACK => Ok(Packet::Oack {
            options: parse_options(body)?,
        }),
        other => Err(WireError::UnknownOpcode(other)),
    }
}

/// Append `s` up to its first NUL, then a NUL.
fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    out.extend_from_slice(&s[..end]);
    out.push(0);
}

fn put_options(out: &mut Vec<u8>, options: &[(String, String)]) {
    for (name, value) in options {
        put_cstr(out, name.as_bytes());
        put_cstr(out, value.as_bytes());
    }
}

fn put_request(out: &mut Vec<u8>, opcode: u16, r: &Request) {
    out.extend_from_slice(&opcode.to_be_bytes());
    put_cstr(out, &r.filename);
    put_cstr(out, &r.mode);
    put_options(out, &r.options);
}

impl Packet {
    /// Encode. String fields are cut at an embedded NUL (which the format cannot carry).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Rrq(r) => put_request(&mut out, OP_RRQ, r),
            Self::Wrq(r) => put_request(&mut out, OP_WRQ, r),
            Self::Data { block, data } => {
                out.extend_from_slice(&emit_data_header(*block));
                out.extend_from_slice(data);
            }
            Self::Ack { block } => out.extend_from_slice(&emit_ack(*block)),
            Self::Error { code, message } => return emit_error(*code, message),
            Self::Oack { options } => return emit_oack(options),
        }
        out
    }
}

/// The 4-byte header of DATA `block`; the payload follows.
pub fn emit_data_header(block: u16) -> [u8; 4] {
    let [a, b] = OP_DATA.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// ACK `block`.
pub fn emit_ack(block: u16) -> [u8; 4] {
    let [a, b] = OP_ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// ERROR `code` with `message`.
pub fn emit_error(code: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&OP_ERROR.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    put_cstr(&mut out, message.as_bytes());
    out
}

/// OACK with `options` in order.
pub fn emit_oack(options: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&OP_OACK.to_be_bytes());
    put_options(&mut out, options);
    out
}
