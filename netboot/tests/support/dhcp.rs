//! A small BOOTP/DHCPv4 encoder/decoder for tests (RFC 2131 §2, RFC 2132), written apart from
//! the daemon's own wire module so that the tests check the daemon against an independent reading
//! of the format.

use std::net::Ipv4Addr;

/// DHCP message types (option 53).
pub(crate) mod msg {
    /// DHCPDISCOVER.
    pub(crate) const DISCOVER: u8 = 1;
    /// DHCPOFFER.
    pub(crate) const OFFER: u8 = 2;
    /// DHCPREQUEST.
    pub(crate) const REQUEST: u8 = 3;
    /// DHCPACK.
    pub(crate) const ACK: u8 = 5;
    /// DHCPNAK.
    pub(crate) const NAK: u8 = 6;
    /// DHCPRELEASE.
    pub(crate) const RELEASE: u8 = 7;
}

/// Option codes the tests use.
pub(crate) mod opt {
    /// Subnet mask.
    pub(crate) const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub(crate) const ROUTER: u8 = 3;
    /// DNS servers.
    pub(crate) const DNS: u8 = 6;
    /// Host name.
    pub(crate) const HOSTNAME: u8 = 12;
    /// Requested IP address.
    pub(crate) const REQUESTED_IP: u8 = 50;
    /// Lease time.
    pub(crate) const LEASE_TIME: u8 = 51;
    /// Option overload.
    pub(crate) const OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub(crate) const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub(crate) const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub(crate) const PRL: u8 = 55;
    /// Maximum message size.
    pub(crate) const MAX_SIZE: u8 = 57;
    /// Vendor class identifier.
    pub(crate) const VENDOR_CLASS: u8 = 60;
    /// Client identifier.
    pub(crate) const CLIENT_ID: u8 = 61;
    /// TFTP server name.
    pub(crate) const TFTP_SERVER: u8 = 66;
    /// Boot file name.
    pub(crate) const BOOTFILE: u8 = 67;
    /// User class.
    pub(crate) const USER_CLASS: u8 = 77;
    /// Client system architecture.
    pub(crate) const ARCH: u8 = 93;
    /// Client network device interface.
    pub(crate) const NDI: u8 = 94;
    /// Client machine UUID.
    pub(crate) const UUID: u8 = 97;
    /// iPXE encapsulated options.
    pub(crate) const IPXE: u8 = 175;
}

/// The DHCP magic cookie.
pub(crate) const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP `op`: request.
pub(crate) const BOOTREQUEST: u8 = 1;
/// BOOTP `op`: reply.
pub(crate) const BOOTREPLY: u8 = 2;
/// The BROADCAST bit of `flags`.
pub(crate) const FLAG_BROADCAST: u16 = 0x8000;

/// A BOOTP/DHCP message with its options in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    pub(crate) op: u8,
    /// Hardware type.
    pub(crate) htype: u8,
    /// Hardware address length.
    pub(crate) hlen: u8,
    /// Relay hops.
    pub(crate) hops: u8,
    /// Transaction id.
    pub(crate) xid: u32,
    /// Seconds elapsed.
    pub(crate) secs: u16,
    /// Flags.
    pub(crate) flags: u16,
    /// Client address.
    pub(crate) ciaddr: Ipv4Addr,
    /// "Your" address.
    pub(crate) yiaddr: Ipv4Addr,
    /// Next server.
    pub(crate) siaddr: Ipv4Addr,
    /// Relay agent.
    pub(crate) giaddr: Ipv4Addr,
    /// Client hardware address field.
    pub(crate) chaddr: [u8; 16],
    /// Server name field, NULs trimmed.
    pub(crate) sname: Vec<u8>,
    /// Boot file field, NULs trimmed.
    pub(crate) file: Vec<u8>,
    /// Options (code, data) in order, without PAD/END.
    pub(crate) options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// A BOOTREQUEST of DHCP type `message_type` from `mac`, BROADCAST flag set.
    pub(crate) fn request(message_type: u8, mac: [u8; 6], xid: u32) -> Self {
        let mut chaddr = [0; 16];
        chaddr[..6].copy_from_slice(&mac);
        Self {
            op: BOOTREQUEST,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: FLAG_BROADCAST,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options: vec![(opt::MESSAGE_TYPE, vec![message_type])],
        }
    }

    /// Append an option.
    pub(crate) fn with(mut self, code: u8, data: impl Into<Vec<u8>>) -> Self {
        self.options.push((code, data.into()));
        self
    }

    /// Encode: fixed header, cookie, options (long ones split per RFC 3396), END.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = self.encode_header();
        for (code, data) in &self.options {
            if data.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
            for part in data.chunks(255) {
                b.push(*code);
                b.push(part.len() as u8);
                b.extend_from_slice(part);
            }
        }
        b.push(255);
        b
    }

    /// The fixed 236-byte header followed by the magic cookie.
    pub(crate) fn encode_header(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(300);
        b.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.extend_from_slice(&fixed::<64>(&self.sname));
        b.extend_from_slice(&fixed::<128>(&self.file));
        b.extend_from_slice(&COOKIE);
        b
    }

    /// Decode a message; errors describe what was wrong.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < 240 {
            return Err(format!("{} bytes: shorter than header + cookie", b.len()));
        }
        if b[236..240] != COOKIE {
            return Err(format!("bad magic cookie {:?}", &b[236..240]));
        }
        let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(&b[28..44]);
        let mut options = Vec::new();
        parse_options(&b[240..], &mut options)?;
        let mut m = Self {
            op: b[0],
            htype: b[1],
            hlen: b[2],
            hops: b[3],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip(12),
            yiaddr: ip(16),
            siaddr: ip(20),
            giaddr: ip(24),
            chaddr,
            sname: trim_nul(&b[44..108]),
            file: trim_nul(&b[108..236]),
            options,
        };
        // Option overload (RFC 2132 §9.3): file first, then sname.
        if let Some(&[o]) = m.option(opt::OVERLOAD) {
            if o & 1 != 0 {
                parse_options(&b[108..236], &mut m.options)?;
                m.file.clear();
            }
            if o & 2 != 0 {
                parse_options(&b[44..108], &mut m.options)?;
                m.sname.clear();
            }
        }
        Ok(m)
    }

    /// The data of the first instance of an option (see [`Self::option_joined`] for all).
    pub(crate) fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// An option's data with all instances of its code concatenated (RFC 3396).
    pub(crate) fn option_joined(&self, code: u8) -> Option<Vec<u8>> {
        let parts: Vec<&[u8]> = self
            .options
            .iter()
            .filter(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.concat())
        }
    }

    /// An option as text (lossy, trailing NULs removed).
    pub(crate) fn option_str(&self, code: u8) -> Option<String> {
        self.option_joined(code)
            .map(|d| String::from_utf8_lossy(&trim_nul(&d)).into_owned())
    }

    /// An option holding one IPv4 address.
    pub(crate) fn option_ip(&self, code: u8) -> Option<Ipv4Addr> {
        match self.option(code)? {
            &[a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
            _ => None,
        }
    }

    /// An option holding a list of IPv4 addresses.
    pub(crate) fn option_ips(&self, code: u8) -> Option<Vec<Ipv4Addr>> {
        let d = self.option_joined(code)?;
        if d.is_empty() || d.len() % 4 != 0 {
            return None;
        }
        Some(
            d.chunks(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
        )
    }

    /// An option holding a big-endian u32.
    pub(crate) fn option_u32(&self, code: u8) -> Option<u32> {
        match self.option(code)? {
            &[a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// The DHCP message type (option 53).
    pub(crate) fn message_type(&self) -> Option<u8> {
        match self.option(opt::MESSAGE_TYPE)? {
            &[t] => Some(t),
            _ => None,
        }
    }

    /// The `file` field as text.
    pub(crate) fn file_str(&self) -> String {
        String::from_utf8_lossy(&self.file).into_owned()
    }

    /// The first six bytes of `chaddr`.
    pub(crate) fn mac(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.chaddr[..6]);
        m
    }
}

/// Parse TLV options up to END (or the end of the area), appending to `out`.
fn parse_options(mut b: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), String> {
    while let Some((&code, rest)) = b.split_first() {
        match code {
            0 => b = rest,
            255 => return Ok(()),
            _ => {
                let (&len, rest) = rest
                    .split_first()
                    .ok_or(format!("option {code}: no length"))?;
                let len = usize::from(len);
                if rest.len() < len {
                    return Err(format!(
                        "option {code}: length {len} past the end ({} left)",
                        rest.len()
                    ));
                }
                out.push((code, rest[..len].to_vec()));
                b = &rest[len..];
            }
        }
    }
    Ok(())
}

/// `data` NUL-padded (or cut) to `N` bytes.
fn fixed<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    let n = data.len().min(N);
    a[..n].copy_from_slice(&data[..n]);
    a
}

/// `data` up to its first NUL.
fn trim_nul(data: &[u8]) -> Vec<u8> {
    let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
    data[..end].to_vec()
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|e| panic!("bad MAC {s:?}: {e}")))
        .collect();
    v.try_into()
        .unwrap_or_else(|_| panic!("bad MAC {s:?}: need six octets"))
}

/// A deterministic transaction id (different per call).
pub(crate) fn xid() -> u32 {
    std::process::id().rotate_left(16) ^ super::next_id() ^ 0x4e42_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let m = Message::request(msg::DISCOVER, [2, 0, 0, 0, 0, 1], 7)
            .with(opt::ARCH, vec![0, 7])
            .with(opt::VENDOR_CLASS, b"PXEClient".to_vec())
            .with(opt::HOSTNAME, vec![b'x'; 300]);
        let b = m.encode();
        let d = Message::decode(&b).unwrap();
        assert_eq!(d.xid, 7);
        assert_eq!(d.message_type(), Some(msg::DISCOVER));
        assert_eq!(d.option(opt::ARCH), Some(&[0u8, 7][..]));
        assert_eq!(d.option_joined(opt::HOSTNAME).unwrap().len(), 300);
        assert!(Message::decode(&b[..239]).is_err());
    }
}
