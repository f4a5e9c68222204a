use std::net::Ipv4Addr;

use ims_proto::MacAddr;
use proptest::prelude::*;

use super::*;
use crate::dhcp::wire::fixtures::{
    DHCLIENT_REQUEST_FRAME, UDHCPC_DISCOVER_FRAME, UDHCPD_OFFER_FRAME, hex,
};
use crate::dhcp::wire::{Message, MessageType};

const CLIENT_MAC: MacAddr = MacAddr([2, 0x77, 0, 0, 0, 2]);
const SERVER_MAC: MacAddr = MacAddr([2, 0x77, 0, 0, 0, 1]);
/// Where the IPv4 header starts in an untagged frame.
const IP: usize = 14;

fn emit(f: &UdpFrame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    f.emit(&mut out);
    assert_eq!(out.len(), f.buffer_len(), "buffer_len must match emit");
    out
}

/// Recomputes the IPv4 header checksum of an untagged frame after a test edited the header
/// (RFC 1071, written out here independently of the module under test).
fn fix_ipv4_checksum(frame: &mut [u8]) {
    let header_len = usize::from(frame[IP] & 0x0f) * 4;
    frame[IP + 10] = 0;
    frame[IP + 11] = 0;
    let mut sum: u32 = frame[IP..IP + header_len]
        .chunks(2)
        .map(|w| (u32::from(w[0]) << 8) | u32::from(w[1]))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn captured_dhclient_request_parses() {
    let bytes = hex(DHCLIENT_REQUEST_FRAME);
    let f = UdpFrame::parse(&bytes).unwrap();
    assert_eq!(f.src_mac, CLIENT_MAC);
    assert_eq!(f.dst_mac, MacAddr::BROADCAST);
    assert_eq!(f.src_ip, Ipv4Addr::UNSPECIFIED);
    assert_eq!(f.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!((f.src_port, f.dst_port), (68, 67));
    assert_eq!(f.payload.len(), 300);
    let m = Message::parse(f.payload).unwrap();
    assert_eq!(m.message_type(), Some(MessageType::Request));
}

#[test]
fn captured_udhcpc_discover_parses() {
    let bytes = hex(UDHCPC_DISCOVER_FRAME);
    let f = UdpFrame::parse(&bytes).unwrap();
    assert_eq!((f.src_port, f.dst_port), (68, 67));
    assert_eq!(f.payload, &bytes[42..]);
}

/// busybox udhcpd writes the same header fields as `emit` (TOS 0, id 0, no DF, TTL 64), so the
/// emitted frame must equal the captured one byte for byte, checksums included.
#[test]
fn emit_matches_the_captured_udhcpd_offer_checksums_included() {
    let bytes = hex(UDHCPD_OFFER_FRAME);
    let f = UdpFrame::parse(&bytes).unwrap();
    assert_eq!(f.src_mac, SERVER_MAC);
    assert_eq!(f.src_ip, Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!((f.src_port, f.dst_port), (67, 68));
    assert_eq!(&bytes[IP + 10..IP + 12], &[0x6f, 0x58]);
    assert_eq!(&bytes[IP + 26..IP + 28], &[0x64, 0x49]);
    assert_eq!(emit(&f), bytes);
}

#[test]
fn emit_sends_a_zero_udp_checksum_as_ffff() {
    // Payload chosen so the one's complement sum of everything else is 0xFFFF: with the pseudo
    // header, UDP header and a two-byte payload `p`, the sum is fixed + p; solve for p.
    let mut f = UdpFrame {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: 67,
        dst_port: 68,
        payload: &[0, 0],
    };
    let fixed: u32 = [0x0a00, 0x0001, 0x0a00, 0x0002, 17, 10, 67, 68, 10]
        .iter()
        .sum();
    let p = (0xffff - fixed) as u16;
    let payload = p.to_be_bytes();
    f.payload = &payload;
    let bytes = emit(&f);
    assert_eq!(&bytes[IP + 26..IP + 28], &[0xff, 0xff]);
    assert_eq!(UdpFrame::parse(&bytes), Ok(f));
}

#[test]
fn round_trip_of_a_reply() {
    let payload = hex("0201060000003039");
    let f = UdpFrame {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: Ipv4Addr::new(10, 77, 0, 1),
        dst_ip: Ipv4Addr::new(10, 77, 0, 145),
        src_port: 67,
        dst_port: 68,
        payload: &payload,
    };
    let bytes = emit(&f);
    assert_eq!(bytes.len(), 42 + 8);
    assert_eq!(&bytes[12..14], &[0x08, 0x00]);
    assert_eq!(bytes[IP], 0x45);
    assert_eq!(
        &bytes[IP + 4..IP + 9],
        &[0, 0, 0, 0, 64],
        "id 0, no DF, TTL 64"
    );
    assert_eq!(UdpFrame::parse(&bytes), Ok(f));
}

#[test]
fn one_vlan_tag_is_skipped() {
    let plain = hex(DHCLIENT_REQUEST_FRAME);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]); // priority 1, VLAN 10
    tagged.extend_from_slice(&plain[12..]);
    assert_eq!(UdpFrame::parse(&tagged), UdpFrame::parse(&plain));
    assert!(UdpFrame::parse(&tagged).is_ok());

    // A second tag (QinQ) is not IPv4.
    let mut double = plain[..12].to_vec();
    double.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b]);
    double.extend_from_slice(&plain[12..]);
    assert_eq!(UdpFrame::parse(&double), Err(FrameError::NotUdp));
    assert_eq!(UdpFrame::parse(&tagged[..16]), Err(FrameError::Truncated));
}

#[test]
fn ethernet_padding_after_the_datagram_is_ignored() {
    let payload = [1u8, 2, 3, 4];
    let f = UdpFrame {
        src_mac: CLIENT_MAC,
        dst_mac: SERVER_MAC,
        src_ip: Ipv4Addr::new(10, 77, 0, 145),
        dst_ip: Ipv4Addr::new(10, 77, 0, 1),
        src_port: 68,
        dst_port: 67,
        payload: &payload,
    };
    let mut bytes = emit(&f);
    bytes.resize(60, 0); // minimum Ethernet frame without FCS
    assert_eq!(UdpFrame::parse(&bytes), Ok(f));
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // FCS, if the socket keeps it
    assert_eq!(UdpFrame::parse(&bytes), Ok(f));
}

#[test]
fn ipv4_options_are_skipped() {
    let plain = hex(DHCLIENT_REQUEST_FRAME);
    let mut with_options = plain[..IP + 20].to_vec();
    with_options.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
    with_options.extend_from_slice(&plain[IP + 20..]);
    with_options[IP] = 0x46;
    let total = u16::from_be_bytes([plain[IP + 2], plain[IP + 3]]) + 4;
    with_options[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut with_options);
    assert_eq!(UdpFrame::parse(&with_options), UdpFrame::parse(&plain));
    assert!(UdpFrame::parse(&with_options).is_ok());
}

#[test]
fn truncated_frames() {
    let bytes = hex(DHCLIENT_REQUEST_FRAME);
    for len in [0, 1, 13, 14, IP + 19] {
        assert_eq!(
            UdpFrame::parse(&bytes[..len]),
            Err(FrameError::Truncated),
            "{len}"
        );
    }
    // IHL 15 (60 bytes) in a frame holding only 20 bytes of IPv4.
    let mut ihl = bytes[..IP + 20].to_vec();
    ihl[IP] = 0x4f;
    assert_eq!(UdpFrame::parse(&ihl), Err(FrameError::Truncated));
    // IPv4 total length 20 + 4: no room for the UDP header.
    let mut short = bytes.clone();
    short[IP + 2..IP + 4].copy_from_slice(&24u16.to_be_bytes());
    fix_ipv4_checksum(&mut short);
    assert_eq!(UdpFrame::parse(&short), Err(FrameError::Truncated));
}

#[test]
fn not_udp() {
    let bytes = hex(DHCLIENT_REQUEST_FRAME);
    for ethertype in [[0x08, 0x06], [0x86, 0xdd], [0x88, 0xa8]] {
        let mut other = bytes.clone();
        other[12..14].copy_from_slice(&ethertype);
        assert_eq!(UdpFrame::parse(&other), Err(FrameError::NotUdp));
    }
    let mut tcp = bytes.clone();
    tcp[IP + 9] = 6;
    fix_ipv4_checksum(&mut tcp);
    assert_eq!(UdpFrame::parse(&tcp), Err(FrameError::NotUdp));
}

#[test]
fn bad_ipv4_headers() {
    let bytes = hex(DHCLIENT_REQUEST_FRAME);
    type Edit = (&'static str, fn(&mut Vec<u8>));
    let edits: [Edit; 7] = [
        ("version 6", |f| f[IP] = 0x65),
        ("IHL 4", |f| f[IP] = 0x44),
        ("total length past the frame", |f| {
            f[IP + 2..IP + 4].copy_from_slice(&400u16.to_be_bytes())
        }),
        ("total length below IHL", |f| {
            f[IP + 2..IP + 4].copy_from_slice(&19u16.to_be_bytes())
        }),
        ("more fragments", |f| f[IP + 6] = 0x20),
        ("fragment offset", |f| f[IP + 7] = 0x01),
        ("DF and MF", |f| f[IP + 6] = 0x60),
    ];
    for (what, edit) in edits {
        let mut f = bytes.clone();
        edit(&mut f);
        fix_ipv4_checksum(&mut f);
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::BadIpv4), "{what}");
    }
    let mut df = bytes.clone();
    df[IP + 6] = 0x40; // DF alone is fine
    fix_ipv4_checksum(&mut df);
    assert!(UdpFrame::parse(&df).is_ok());

    let mut checksum = bytes.clone();
    checksum[IP + 11] ^= 1;
    assert_eq!(UdpFrame::parse(&checksum), Err(FrameError::BadIpv4));
    let mut ttl = bytes;
    ttl[IP + 8] = 1; // header changed, checksum not
    assert_eq!(UdpFrame::parse(&ttl), Err(FrameError::BadIpv4));
}

#[test]
fn bad_udp_length_and_checksum() {
    let bytes = hex(DHCLIENT_REQUEST_FRAME);
    let udp = IP + 20;
    for len in [0u16, 7, 309] {
        let mut f = bytes.clone();
        f[udp + 4..udp + 6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::BadUdp), "{len}");
    }
    let mut payload = bytes.clone();
    payload[100] ^= 0x40;
    assert_eq!(UdpFrame::parse(&payload), Err(FrameError::BadUdp));
    let mut sum = bytes.clone();
    sum[udp + 7] ^= 1;
    assert_eq!(UdpFrame::parse(&sum), Err(FrameError::BadUdp));

    // With the checksum zeroed (RFC 768: none computed) the altered payload is accepted.
    payload[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    assert_eq!(
        UdpFrame::parse(&payload).map(|f| f.payload[100 - 42]),
        Ok(bytes[100] ^ 0x40)
    );
}

#[test]
fn udp_length_shorter_than_the_ip_payload_bounds_the_payload() {
    // Payload is exactly UDP length - 8, even if IPv4 carries more.
    let body = [7u8; 10];
    let f = UdpFrame {
        src_mac: CLIENT_MAC,
        dst_mac: SERVER_MAC,
        src_ip: Ipv4Addr::new(10, 0, 0, 2),
        dst_ip: Ipv4Addr::new(10, 0, 0, 1),
        src_port: 68,
        dst_port: 67,
        payload: &body,
    };
    let mut bytes = emit(&f);
    let udp = IP + 20;
    bytes[udp + 4..udp + 6].copy_from_slice(&12u16.to_be_bytes());
    bytes[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    assert_eq!(UdpFrame::parse(&bytes).map(|f| f.payload.len()), Ok(4));
}

#[test]
fn oversized_payload_is_truncated_on_emit() {
    let big = vec![0x5a; UdpFrame::MAX_PAYLOAD + 10];
    let f = UdpFrame {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT_MAC,
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: 67,
        dst_port: 68,
        payload: &big,
    };
    let bytes = emit(&f);
    assert_eq!(bytes.len(), 14 + 65535);
    let parsed = UdpFrame::parse(&bytes).unwrap();
    assert_eq!(parsed.payload, &big[..UdpFrame::MAX_PAYLOAD]);
}

proptest! {
    #[test]
    fn parse_inverts_emit(
        macs in any::<([u8; 6], [u8; 6])>(),
        ips in any::<(u32, u32)>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1600),
    ) {
        let f = UdpFrame {
            src_mac: MacAddr(macs.0),
            dst_mac: MacAddr(macs.1),
            src_ip: Ipv4Addr::from(ips.0),
            dst_ip: Ipv4Addr::from(ips.1),
            src_port: ports.0,
            dst_port: ports.1,
            payload: &payload,
        };
        let mut out = vec![0xAA];
        f.emit(&mut out);
        prop_assert_eq!(out.len(), 1 + f.buffer_len());
        prop_assert_eq!(UdpFrame::parse(&out[1..]), Ok(f));
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = UdpFrame::parse(&bytes);
    }

    /// A valid Ethernet/IPv4 prefix followed by arbitrary bytes, to reach the UDP checks.
    #[test]
    fn parse_never_panics_past_the_ethernet_header(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        vlan in any::<bool>(),
    ) {
        let mut bytes = hex("ffffffffffff 027700000002");
        if vlan {
            bytes.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        bytes.extend_from_slice(&[0x08, 0x00]);
        bytes.extend_from_slice(&tail);
        if let Ok(f) = UdpFrame::parse(&bytes) {
            let mut out = Vec::new();
            f.emit(&mut out);
            prop_assert_eq!(UdpFrame::parse(&out), Ok(f));
        }
    }
}
