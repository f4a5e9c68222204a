//! The client side of DHCPv4 as the load generator needs it: DISCOVER and REQUEST payloads, the
//! few fields of a reply it checks, and the Ethernet/IPv4/UDP framing of direct (raw) mode.
//!
//! This is deliberately a second, independent implementation of the wire format rather than a
//! reuse of `ims_netboot::dhcp::wire`: a load generator that shares the server's codec would
//! share its bugs, while this one is cross-checked against Kea and dnsmasq in every run.
//! Everything here is pure and never panics on input.

use std::net::Ipv4Addr;

use ims_proto::MacAddr;

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header length (up to and excluding the magic cookie).
const BOOTP_LEN: usize = 236;
/// Classic BOOTP minimum message size; real clients pad to it and some servers expect it.
const MIN_LEN: usize = 300;
const BROADCAST_FLAG: u16 = 0x8000;

const OPT_PAD: u8 = 0;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_END: u8 = 255;

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST in SELECTING state: asks for `offered` from the server `server_id`.
    Select {
        /// The address from the OFFER (option 50).
        offered: Ipv4Addr,
        /// The OFFER's server identifier (option 54), when it carried one.
        server_id: Option<Ipv4Addr>,
    },
}

/// How requests are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Sent by a relay agent: `giaddr` set, `hops` = 1.
    Relay {
        /// The relay agent address (where the server answers, port 67).
        giaddr: Ipv4Addr,
    },
    /// Sent by the client itself on the link, with the BROADCAST flag so that replies come to
    /// `255.255.255.255:68` (the simulated clients have no address yet).
    Direct,
}

/// Encodes a BOOTREQUEST from `mac` with transaction id `xid`.
pub fn encode_request(request: Request, mac: MacAddr, xid: u32, addressing: Addressing) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_LEN);
    let (hops, flags, giaddr) = match addressing {
        Addressing::Relay { giaddr } => (1u8, 0u16, giaddr),
        Addressing::Direct => (0, BROADCAST_FLAG, Ipv4Addr::UNSPECIFIED),
    };
    out.extend_from_slice(&[1, 1, 6, hops]); // op BOOTREQUEST, htype Ethernet, hlen 6
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // secs
    out.extend_from_slice(&flags.to_be_bytes());
    for addr in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
    ] {
        out.extend_from_slice(&addr.octets()); // ciaddr, yiaddr, siaddr, giaddr
    }
    out.extend_from_slice(&mac.octets());
    out.resize(BOOTP_LEN, 0); // rest of chaddr, sname, file
    out.extend_from_slice(&MAGIC);
    match request {
        Request::Discover => out.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 1]),
        Request::Select { offered, server_id } => {
            out.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 3, OPT_REQUESTED_IP, 4]);
            out.extend_from_slice(&offered.octets());
            if let Some(server_id) = server_id {
                out.extend_from_slice(&[OPT_SERVER_ID, 4]);
                out.extend_from_slice(&server_id.octets());
            }
        }
    }
    // subnet mask, router, DNS, hostname, lease time, server id
    out.extend_from_slice(&[OPT_PARAMETER_LIST, 6, 1, 3, 6, 12, 51, 54]);
    out.push(OPT_END);
    if out.len() < MIN_LEN {
        out.resize(MIN_LEN, OPT_PAD);
    }
    out
}

/// DHCP message types a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// DHCPOFFER (2).
    Offer,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// Any other option 53 value.
    Other(u8),
}

/// The fields of a BOOTREPLY the generator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Transaction id.
    pub xid: u32,
    /// First six octets of `chaddr`.
    pub mac: MacAddr,
    /// Offered or assigned address.
    pub yiaddr: Ipv4Addr,
    /// Message type (option 53).
    pub kind: ReplyKind,
    /// Server identifier (option 54), if present.
    pub server_id: Option<Ipv4Addr>,
}

/// Why bytes are not a usable BOOTREPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Shorter than the BOOTP header and magic cookie.
    #[error("truncated DHCP message")]
    Truncated,
    /// `op` is not BOOTREPLY or the hardware type is not Ethernet.
    #[error("not a BOOTREPLY for an Ethernet client")]
    NotReply,
    /// The magic cookie is missing.
    #[error("missing DHCP magic cookie")]
    BadMagic,
    /// An option runs past the end of the message.
    #[error("bad option length")]
    BadOption,
    /// No message type option (53).
    #[error("no DHCP message type")]
    NoMessageType,
}

/// Decodes the fields of a BOOTREPLY the generator needs. Options 53 and 54 are looked up in
/// the options field only (option overload, 52, is not followed: servers do not move these two
/// into `sname`/`file`).
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    let header = bytes.get(..BOOTP_LEN + 4).ok_or(ReplyError::Truncated)?;
    if header[0] != 2 || header[1] != 1 || header[2] != 6 {
        return Err(ReplyError::NotReply);
    }
    if header[BOOTP_LEN..] != MAGIC {
        return Err(ReplyError::BadMagic);
    }
    let xid = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let yiaddr = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let mac = MacAddr([
        header[28], header[29], header[30], header[31], header[32], header[33],
    ]);
    let mut kind = None;
    let mut server_id = None;
    let mut options = &bytes[BOOTP_LEN + 4..];
    while let Some((&code, rest)) = options.split_first() {
        match code {
            OPT_PAD => {
                options = rest;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first().ok_or(ReplyError::BadOption)?;
        let value = rest.get(..usize::from(len)).ok_or(ReplyError::BadOption)?;
        match (code, value) {
            (OPT_MESSAGE_TYPE, [t]) => {
                kind = Some(match t {
                    2 => ReplyKind::Offer,
                    5 => ReplyKind::Ack,
                    6 => ReplyKind::Nak,
                    other => ReplyKind::Other(*other),
                });
            }
            (OPT_SERVER_ID, [a, b, c, d]) => server_id = Some(Ipv4Addr::new(*a, *b, *c, *d)),
            _ => {}
        }
        options = &rest[usize::from(len)..];
    }
    Ok(Reply {
        xid,
        mac,
        yiaddr,
        kind: kind.ok_or(ReplyError::NoMessageType)?,
        server_id,
    })
}

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_UDP: u8 = 17;

/// Wraps a request in the frame a client without an address broadcasts: Ethernet from `mac` to
/// `FF:FF:FF:FF:FF:FF`, IPv4 `0.0.0.0` → `255.255.255.255`, UDP 68 → 67, both checksums set.
pub fn encode_broadcast_frame(mac: MacAddr, payload: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::UNSPECIFIED;
    let dst = Ipv4Addr::BROADCAST;
    // A DHCP payload is < 1500 bytes; saturate rather than wrap for absurd inputs.
    let udp_len = u16::try_from(UDP_LEN + payload.len()).unwrap_or(u16::MAX);
    let total_len = udp_len.saturating_add(IPV4_LEN as u16);
    let mut out = Vec::with_capacity(ETH_LEN + usize::from(total_len));
    out.extend_from_slice(&MacAddr::BROADCAST.octets());
    out.extend_from_slice(&mac.octets());
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_UDP, 0, 0]); // id, frag, ttl, proto, checksum
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let ip_checksum = checksum(&[&out[ip_start..ip_start + IPV4_LEN]]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&ip_checksum.to_be_bytes());
    let udp_start = out.len();
    out.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    out.extend_from_slice(&SERVER_PORT.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let udp_checksum = match checksum(&[
        &src.octets(),
        &dst.octets(),
        &[0, PROTO_UDP],
        &udp_len.to_be_bytes(),
        &out[udp_start..],
    ]) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        c => c,
    };
    out[udp_start + 6..udp_start + 8].copy_from_slice(&udp_checksum.to_be_bytes());
    out
}

/// Returns the UDP payload of an Ethernet/IPv4/UDP frame addressed to UDP port `port`, or
/// `None` for anything else (other protocols, fragments, truncated or inconsistent headers).
/// Checksums are not verified: the frames come off a local veth.
pub fn udp_payload_to_port(frame: &[u8], port: u16) -> Option<&[u8]> {
    if frame.get(12..14)? != ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let ip = frame.get(ETH_LEN..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let version = ip.first()? >> 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
    if version != 4 || ihl < IPV4_LEN || *ip.get(9)? != PROTO_UDP || fragment != 0 {
        return None;
    }
    let ip = ip.get(..total_len)?;
    let udp = ip.get(ihl..)?;
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dst_port != port || udp_len < UDP_LEN {
        return None;
    }
    udp.get(UDP_LEN..udp_len)
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`; each part but the last
/// has even length here.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x12, 0x34]);

    /// Builds a reply the way a server would: the request turned around with options replaced.
    fn reply(request: &[u8], kind: u8, yiaddr: Ipv4Addr, server_id: Ipv4Addr) -> Vec<u8> {
        let mut out = request[..BOOTP_LEN + 4].to_vec();
        out[0] = 2;
        out[16..20].copy_from_slice(&yiaddr.octets());
        out.extend_from_slice(&[OPT_PAD, OPT_MESSAGE_TYPE, 1, kind, OPT_SERVER_ID, 4]);
        out.extend_from_slice(&server_id.octets());
        out.extend_from_slice(&[51, 4, 0, 0, 14, 16, OPT_END]);
        out
    }

    #[test]
    fn discover_layout() {
        let m = encode_request(Request::Discover, MAC, 0xdead_beef, Addressing::Direct);
        assert_eq!(m.len(), MIN_LEN);
        assert_eq!(&m[..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&m[10..12], &[0x80, 0]);
        assert_eq!(&m[28..34], &MAC.octets());
        assert_eq!(&m[BOOTP_LEN..BOOTP_LEN + 4], &MAGIC);
        assert_eq!(&m[BOOTP_LEN + 4..BOOTP_LEN + 7], &[53, 1, 1]);
    }

    #[test]
    fn relayed_select_carries_giaddr_requested_ip_and_server_id() {
        let giaddr = Ipv4Addr::new(10, 78, 0, 2);
        let m = encode_request(
            Request::Select {
                offered: Ipv4Addr::new(10, 78, 1, 2),
                server_id: Some(Ipv4Addr::new(10, 77, 0, 1)),
            },
            MAC,
            7,
            Addressing::Relay { giaddr },
        );
        assert_eq!(m[3], 1, "hops");
        assert_eq!(&m[10..12], &[0, 0], "no broadcast flag through a relay");
        assert_eq!(&m[24..28], &giaddr.octets());
        let opts = &m[BOOTP_LEN + 4..];
        assert_eq!(&opts[..3], &[53, 1, 3]);
        assert_eq!(&opts[3..9], &[50, 4, 10, 78, 1, 2]);
        assert_eq!(&opts[9..15], &[54, 4, 10, 77, 0, 1]);
    }

    #[test]
    fn decodes_offer_and_ack() {
        let req = encode_request(Request::Discover, MAC, 42, Addressing::Direct);
        let yi = Ipv4Addr::new(10, 76, 0, 9);
        let sid = Ipv4Addr::new(10, 76, 0, 1);
        let offer = decode_reply(&reply(&req, 2, yi, sid)).unwrap();
        assert_eq!(
            offer,
            Reply {
                xid: 42,
                mac: MAC,
                yiaddr: yi,
                kind: ReplyKind::Offer,
                server_id: Some(sid)
            }
        );
        assert_eq!(
            decode_reply(&reply(&req, 5, yi, sid)).unwrap().kind,
            ReplyKind::Ack
        );
        assert_eq!(
            decode_reply(&reply(&req, 6, yi, sid)).unwrap().kind,
            ReplyKind::Nak
        );
    }

    #[test]
    fn rejects_requests_truncation_and_bad_options() {
        let req = encode_request(Request::Discover, MAC, 42, Addressing::Direct);
        assert_eq!(decode_reply(&req), Err(ReplyError::NotReply));
        let good = reply(&req, 2, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
        assert_eq!(decode_reply(&good[..100]), Err(ReplyError::Truncated));
        let mut bad_magic = good.clone();
        bad_magic[BOOTP_LEN] = 0;
        assert_eq!(decode_reply(&bad_magic), Err(ReplyError::BadMagic));
        let mut long_opt = good[..BOOTP_LEN + 4].to_vec();
        long_opt.extend_from_slice(&[53, 9, 2]);
        assert_eq!(decode_reply(&long_opt), Err(ReplyError::BadOption));
        let mut no_type = good[..BOOTP_LEN + 4].to_vec();
        no_type.push(OPT_END);
        assert_eq!(decode_reply(&no_type), Err(ReplyError::NoMessageType));
        // Every prefix of a valid reply decodes or errors, never panics.
        for n in 0..good.len() {
            let _ = decode_reply(&good[..n]);
        }
    }

    #[test]
    fn broadcast_frame_round_trips_and_checksums_verify() {
        let payload = encode_request(Request::Discover, MAC, 1, Addressing::Direct);
        let frame = encode_broadcast_frame(MAC, &payload);
        assert_eq!(&frame[..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &MAC.octets());
        // A correct header sums to zero (all ones before the final complement).
        assert_eq!(checksum(&[&frame[ETH_LEN..ETH_LEN + IPV4_LEN]]), 0);
        let udp = &frame[ETH_LEN + IPV4_LEN..];
        let len = (udp.len() as u16).to_be_bytes();
        assert_eq!(
            checksum(&[&[0, 0, 0, 0], &[255; 4], &[0, PROTO_UDP], &len, udp]),
            0
        );
        assert_eq!(udp_payload_to_port(&frame, SERVER_PORT), Some(&payload[..]));
        assert_eq!(udp_payload_to_port(&frame, CLIENT_PORT), None);
        for n in 0..frame.len() {
            assert_eq!(
                udp_payload_to_port(&frame[..n], SERVER_PORT),
                None,
                "prefix {n}"
            );
        }
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, complement 220d.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
        // Odd trailing byte is padded with zero.
        assert_eq!(checksum(&[&[0x01]]), !0x0100);
    }
}
