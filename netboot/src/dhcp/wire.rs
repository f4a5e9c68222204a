//! BOOTP/DHCPv4 messages (RFC 2131 §2, RFC 2132 options, RFC 3396 long options).
//!
//! [`Message::parse`] checks the length and the magic cookie once, then decodes the options into
//! [`Options`], raw values keyed by code: repeated options are concatenated (RFC 3396) and option
//! overload (52) is resolved, so the rest of the server never sees either. Typed accessors cover
//! the options the server reads and writes. Neither `parse` nor [`Message::emit`] panics on any
//! input; `parse` fails with a small `Copy` [`Error`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ims_proto::MacAddr;

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
    /// Any other code.
    Unknown(u8),
}

/// Option codes used by the server.
pub mod code {
    #![allow(missing_docs)]
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST_ADDRESS: u8 = 28;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// Why bytes are not a DHCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the fixed BOOTP header (236 bytes) plus the magic cookie.
    #[error("truncated message")]
    Truncated,
    /// The magic cookie 99.130.83.99 is missing.
    #[error("missing DHCP magic cookie")]
    BadMagic,
    /// An option's length runs past the end of its area.
    #[error("bad option length")]
    BadOption,
    /// Larger than any DHCP message we accept.
    #[error("oversized message")]
    Oversized,
}

/// A decoded BOOTP/DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    pub op: u8,
    /// Hardware type (1 = Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags; bit 15 is BROADCAST.
    pub flags: u16,
    /// Client address (when the client already has one).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered/assigned.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address field, 16 bytes.
    pub chaddr: [u8; 16],
    /// Server host name field (up to 64 bytes, without trailing NULs).
    pub sname: Vec<u8>,
    /// Boot file name field (up to 128 bytes, without trailing NULs).
    pub file: Vec<u8>,
    /// Options (without PAD/END; overload already resolved).
    pub options: Options,
}

/// DHCP options by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: BTreeMap<u8, Vec<u8>>,
}

/// Offset of the `sname` field in the fixed header.
const SNAME_OFFSET: usize = 44;
/// Length of the `sname` field.
const SNAME_LEN: usize = 64;
/// Offset of the `file` field in the fixed header.
const FILE_OFFSET: usize = SNAME_OFFSET + SNAME_LEN;
/// Length of the `file` field.
const FILE_LEN: usize = 128;
/// Length of the fixed BOOTP header (RFC 2131 §2, figure 1).
const HEADER_LEN: usize = FILE_OFFSET + FILE_LEN;
/// The DHCP magic cookie (RFC 2131 §3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Where the options field starts.
const OPTIONS_OFFSET: usize = HEADER_LEN + MAGIC_COOKIE.len();
/// The minimum BOOTP message length (RFC 1542 §2.1): some relays and clients drop shorter ones.
const MIN_LEN: usize = 300;
/// Longest value one option instance can carry (RFC 3396 splits longer ones).
const MAX_INSTANCE: usize = 255;

impl MessageType {
    /// The type for an option 53 value; codes outside 1..=8 become [`MessageType::Unknown`].
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            other => Self::Unknown(other),
        }
    }

    /// The option 53 value.
    pub fn code(self) -> u8 {
        match self {
            Self::Discover => 1,
            Self::Offer => 2,
            Self::Request => 3,
            Self::Decline => 4,
            Self::Ack => 5,
            Self::Nak => 6,
            Self::Release => 7,
            Self::Inform => 8,
            Self::Unknown(c) => c,
        }
    }

    /// Lower-case name for logs and metric labels (`"discover"`, …, `"unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::Offer => "offer",
            Self::Request => "request",
            Self::Decline => "decline",
            Self::Ack => "ack",
            Self::Nak => "nak",
            Self::Release => "release",
            Self::Inform => "inform",
            Self::Unknown(_) => "unknown",
        }
    }
}

impl Message {
    /// Bit 15 of `flags`: the client cannot receive unicast before it is configured
    /// (RFC 2131 §4.1).
    pub const BROADCAST_FLAG: u16 = 0x8000;

    /// Longest input [`Message::parse`] accepts, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// Decodes a BOOTP/DHCP message (a UDP payload).
    ///
    /// The fixed 236-byte header must be followed by the magic cookie. Options are read as
    /// code/length/value triples: PAD is skipped, END stops the area (a missing END is tolerated)
    /// and an option seen several times is concatenated (RFC 3396). When option 52 (overload)
    /// says so, the `file` and then the `sname` field are read as further option areas and the
    /// field itself is left empty; option 52 is consumed and not kept in [`Message::options`].
    /// `sname` and `file` keep their bytes up to the first NUL.
    ///
    /// # Errors
    ///
    /// [`Error::Oversized`] above [`Message::MAX_LEN`] bytes, [`Error::Truncated`] below
    /// 240 bytes, [`Error::BadMagic`] without the cookie, and [`Error::BadOption`] when an
    /// option's length runs past the end of its area.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Error::Oversized);
        }
        let Some((head, options_area)) = bytes.split_first_chunk::<OPTIONS_OFFSET>() else {
            return Err(Error::Truncated);
        };
        if head[HEADER_LEN..] != MAGIC_COOKIE {
            return Err(Error::BadMagic);
        }
        let sname_field = &head[SNAME_OFFSET..FILE_OFFSET];
        let file_field = &head[FILE_OFFSET..HEADER_LEN];

        let mut entries = BTreeMap::new();
        parse_area(options_area, &mut entries)?;
        let overload = entries.remove(&code::OVERLOAD);
        let (file_has_options, sname_has_options) = match overload.as_deref() {
            Some([1]) => (true, false),
            Some([2]) => (false, true),
            Some([3]) => (true, true),
            // Absent, or a value RFC 2132 §9.3 does not define: the fields hold names.
            _ => (false, false),
        };
        // RFC 3396 §5: the options field, then `file`, then `sname`.
        if file_has_options {
            parse_area(file_field, &mut entries)?;
        }
        if sname_has_options {
            parse_area(sname_field, &mut entries)?;
        }
        // Option 52 means nothing inside an overloaded field.
        entries.remove(&code::OVERLOAD);

        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&head[28..SNAME_OFFSET]);
        Ok(Self {
            op: head[0],
            htype: head[1],
            hlen: head[2],
            hops: head[3],
            xid: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
            secs: u16::from_be_bytes([head[8], head[9]]),
            flags: u16::from_be_bytes([head[10], head[11]]),
            ciaddr: Ipv4Addr::new(head[12], head[13], head[14], head[15]),
            yiaddr: Ipv4Addr::new(head[16], head[17], head[18], head[19]),
            siaddr: Ipv4Addr::new(head[20], head[21], head[22], head[23]),
            giaddr: Ipv4Addr::new(head[24], head[25], head[26], head[27]),
            chaddr,
            sname: if sname_has_options {
                Vec::new()
            } else {
                until_nul(sname_field)
            },
            file: if file_has_options {
                Vec::new()
            } else {
                until_nul(file_field)
            },
            options: Options { entries },
        })
    }

    /// Appends the encoded message to `out`; exactly [`Message::buffer_len`] bytes.
    ///
    /// Options go out as 53 first, 54 second, the others by ascending code and 82 (relay agent
    /// information, RFC 3046 §2.1) last, then END; values over 255 bytes are split into
    /// consecutive instances (RFC 3396). PAD (0), overload (52) and END (255) in the map are not
    /// written: this encoder never overloads `sname`/`file`. `sname` and `file` are truncated to
    /// 64 and 128 bytes and NUL-padded, and the message is padded with PAD to 300 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.buffer_len());
        out.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for addr in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&addr.octets());
        }
        out.extend_from_slice(&self.chaddr);
        emit_field(out, &self.sname, SNAME_LEN);
        emit_field(out, &self.file, FILE_LEN);
        out.extend_from_slice(&MAGIC_COOKIE);
        for (option, value) in self.options.emit_order() {
            if value.is_empty() {
                out.extend_from_slice(&[option, 0]);
            }
            for chunk in value.chunks(MAX_INSTANCE) {
                // `chunks(255)` never yields more than 255 bytes.
                out.extend_from_slice(&[option, u8::try_from(chunk.len()).unwrap_or(u8::MAX)]);
                out.extend_from_slice(chunk);
            }
        }
        out.push(code::END);
        if out.len() - start < MIN_LEN {
            out.resize(start + MIN_LEN, code::PAD);
        }
    }

    /// The exact number of bytes [`Message::emit`] appends.
    pub fn buffer_len(&self) -> usize {
        let options: usize = self
            .options
            .emit_order()
            .map(|(_, value)| value.len() + 2 * value.len().div_ceil(MAX_INSTANCE).max(1))
            .sum();
        (OPTIONS_OFFSET + options + 1).max(MIN_LEN)
    }

    /// A reply skeleton for `request` (RFC 2131 §4.3.1, table 3): `op` = BOOTREPLY, `htype`,
    /// `hlen`, `xid`, `flags`, `giaddr` and `chaddr` copied, everything else zero or empty, and
    /// the only option is the message type.
    pub fn new_reply(request: &Self, message_type: MessageType) -> Self {
        let mut options = Options::default();
        options.set_message_type(message_type);
        Self {
            op: 2,
            htype: request.htype,
            hlen: request.hlen,
            hops: 0,
            xid: request.xid,
            secs: 0,
            flags: request.flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: request.giaddr,
            chaddr: request.chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options,
        }
    }

    /// The DHCP message type (option 53), or `None` for a plain BOOTP message.
    pub fn message_type(&self) -> Option<MessageType> {
        self.options.message_type()
    }

    /// The client's Ethernet address: `Some` only when `htype` is 1 and `hlen` is 6.
    pub fn client_mac(&self) -> Option<MacAddr> {
        if self.htype != 1 || self.hlen != 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.chaddr[..6]);
        Some(MacAddr(mac))
    }

    /// Whether the client set the BROADCAST flag.
    pub fn is_broadcast(&self) -> bool {
        self.flags & Self::BROADCAST_FLAG != 0
    }
}

impl Options {
    /// The raw value of option `code` (all instances concatenated).
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries.get(&code).map(Vec::as_slice)
    }

    /// Sets option `code`, replacing any previous value.
    ///
    /// Values of any length are allowed; [`Message::emit`] splits long ones. Codes 0 (PAD),
    /// 52 (overload) and 255 (END) are kept here but never emitted.
    pub fn set(&mut self, code: u8, value: impl Into<Vec<u8>>) {
        self.entries.insert(code, value.into());
    }

    /// Removes option `code`, returning its value.
    pub fn remove(&mut self, code: u8) -> Option<Vec<u8>> {
        self.entries.remove(&code)
    }

    /// Whether option `code` is present.
    pub fn contains(&self, code: u8) -> bool {
        self.entries.contains_key(&code)
    }

    /// All options by ascending code.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries
            .iter()
            .map(|(&code, value)| (code, value.as_slice()))
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Option 53, when exactly one byte long.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.get(code::MESSAGE_TYPE)? {
            [c] => Some(MessageType::from_code(*c)),
            _ => None,
        }
    }

    /// Option `code` as one IPv4 address (exactly four bytes).
    pub fn ipv4(&self, code: u8) -> Option<Ipv4Addr> {
        let octets: [u8; 4] = self.get(code)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    }

    /// Option `code` as a big-endian `u16` (exactly two bytes).
    pub fn u16(&self, code: u8) -> Option<u16> {
        Some(u16::from_be_bytes(self.get(code)?.try_into().ok()?))
    }

    /// Option `code` as a big-endian `u32` (exactly four bytes).
    pub fn u32(&self, code: u8) -> Option<u32> {
        Some(u32::from_be_bytes(self.get(code)?.try_into().ok()?))
    }

    /// Requested IP address (option 50).
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.ipv4(code::REQUESTED_IP)
    }

    /// Server identifier (option 54).
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.ipv4(code::SERVER_ID)
    }

    /// Parameter request list (option 55): the option codes the client wants; empty if absent.
    pub fn parameter_request_list(&self) -> &[u8] {
        self.get(code::PARAMETER_REQUEST_LIST).unwrap_or_default()
    }

    /// Client identifier (option 61), raw (usually a type byte then the hardware address or a
    /// DUID).
    pub fn client_id(&self) -> Option<&[u8]> {
        self.get(code::CLIENT_ID)
    }

    /// Host name (option 12), when non-empty valid UTF-8.
    pub fn hostname(&self) -> Option<&str> {
        let raw = self.get(code::HOSTNAME)?;
        if raw.is_empty() {
            return None;
        }
        std::str::from_utf8(raw).ok()
    }

    /// Vendor class identifier (option 60), e.g. `PXEClient:Arch:00007:UNDI:003000`.
    pub fn vendor_class(&self) -> Option<&[u8]> {
        self.get(code::VENDOR_CLASS)
    }

    /// Client system architecture (option 93, RFC 4578 §2.1): the first of the listed types.
    /// `None` when absent, empty or of odd length.
    pub fn client_arch(&self) -> Option<u16> {
        match self.get(code::CLIENT_ARCH)? {
            [hi, lo, rest @ ..] if rest.len() % 2 == 0 => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }

    /// Client machine identifier (option 97, RFC 4578 §2.3), raw: a type byte (0) and a UUID.
    pub fn client_uuid(&self) -> Option<&[u8]> {
        self.get(code::CLIENT_UUID)
    }

    /// Relay agent information (option 82, RFC 3046), raw sub-options.
    pub fn relay_agent_info(&self) -> Option<&[u8]> {
        self.get(code::RELAY_AGENT_INFO)
    }

    /// Maximum DHCP message size the client accepts (option 57).
    pub fn max_message_size(&self) -> Option<u16> {
        self.u16(code::MAX_MESSAGE_SIZE)
    }

    /// Whether the user class (option 77) says the client is iPXE: either the raw string `iPXE`
    /// (what iPXE sends) or an RFC 3004 list of length-prefixed items, one of them `iPXE`.
    pub fn user_class_is_ipxe(&self) -> bool {
        const IPXE: &[u8] = b"iPXE";
        let Some(raw) = self.get(code::USER_CLASS) else {
            return false;
        };
        if raw == IPXE {
            return true;
        }
        let mut rest = raw;
        while let Some((&len, tail)) = rest.split_first() {
            let Some((item, tail)) = tail.split_at_checked(usize::from(len)) else {
                return false;
            };
            if item == IPXE {
                return true;
            }
            rest = tail;
        }
        false
    }

    /// Sets the message type (option 53).
    pub fn set_message_type(&mut self, t: MessageType) {
        self.set(code::MESSAGE_TYPE, [t.code()]);
    }

    /// Sets option `code` to one IPv4 address.
    pub fn set_ipv4(&mut self, code: u8, ip: Ipv4Addr) {
        self.set(code, ip.octets());
    }

    /// Sets option `code` to a list of IPv4 addresses, in order.
    pub fn set_ipv4_list(&mut self, code: u8, ips: &[Ipv4Addr]) {
        self.set(
            code,
            ips.iter().flat_map(|ip| ip.octets()).collect::<Vec<u8>>(),
        );
    }

    /// Sets option `code` to a big-endian `u16`.
    pub fn set_u16(&mut self, code: u8, v: u16) {
        self.set(code, v.to_be_bytes());
    }

    /// Sets option `code` to a big-endian `u32`.
    pub fn set_u32(&mut self, code: u8, v: u32) {
        self.set(code, v.to_be_bytes());
    }

    /// Sets option `code` to the bytes of `s` (no NUL terminator, RFC 2132 §2).
    pub fn set_str(&mut self, code: u8, s: &str) {
        self.set(code, s.as_bytes());
    }

    /// The options [`Message::emit`] writes, in wire order: 53, 54, the rest ascending, 82.
    fn emit_order(&self) -> impl Iterator<Item = (u8, &[u8])> {
        let first = [code::MESSAGE_TYPE, code::SERVER_ID];
        let head = first.into_iter().filter_map(|c| Some((c, self.get(c)?)));
        let middle = self.iter().filter(|&(c, _)| {
            !matches!(
                c,
                code::PAD
                    | code::OVERLOAD
                    | code::MESSAGE_TYPE
                    | code::SERVER_ID
                    | code::RELAY_AGENT_INFO
                    | code::END
            )
        });
        let last = self
            .get(code::RELAY_AGENT_INFO)
            .map(|v| (code::RELAY_AGENT_INFO, v));
        head.chain(middle).chain(last)
    }
}

/// Reads one option area into `entries`, concatenating repeated codes (RFC 3396 §5).
fn parse_area(area: &[u8], entries: &mut BTreeMap<u8, Vec<u8>>) -> Result<(), Error> {
    let mut rest = area;
    while let Some((&option, tail)) = rest.split_first() {
        match option {
            code::PAD => rest = tail,
            code::END => break,
            _ => {
                let Some((&len, tail)) = tail.split_first() else {
                    return Err(Error::BadOption);
                };
                let Some((value, tail)) = tail.split_at_checked(usize::from(len)) else {
                    return Err(Error::BadOption);
                };
                entries.entry(option).or_default().extend_from_slice(value);
                rest = tail;
            }
        }
    }
    Ok(())
}

/// The bytes of a NUL-padded header field up to its first NUL.
fn until_nul(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

/// Writes `value` into a `len`-byte field, truncated or NUL-padded.
fn emit_field(out: &mut Vec<u8>, value: &[u8], len: usize) {
    let value = value.get(..len).unwrap_or(value);
    out.extend_from_slice(value);
    out.resize(out.len() + (len - value.len()), 0);
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
