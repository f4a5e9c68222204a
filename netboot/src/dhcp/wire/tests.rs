use std::net::Ipv4Addr;

use ims_proto::MacAddr;
use proptest::prelude::*;

use super::fixtures::{
    DHCLIENT_REQUEST_FRAME, UDHCPC_DISCOVER_FRAME, UDHCPD_OFFER_FRAME, bootp, hex,
    ipxe_bios_discover, overloaded_ack, ovmf_uefi_discover, payload_of, relayed_discover,
};
use super::*;

const FIRMWARE_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x10]);

fn emit(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut out);
    assert_eq!(out.len(), m.buffer_len(), "buffer_len must match emit");
    out
}

/// The options area (after the cookie) of an emitted message, up to and including END.
fn emitted_options(m: &Message) -> Vec<u8> {
    let bytes = emit(m);
    let area = &bytes[240..];
    let mut i = 0;
    while area[i] != code::END {
        i += if area[i] == code::PAD {
            1
        } else {
            2 + usize::from(area[i + 1])
        };
    }
    area[..=i].to_vec()
}

fn assert_round_trip(m: &Message) {
    assert_eq!(&Message::parse(&emit(m)).unwrap(), m);
}

fn empty_request() -> Message {
    Message::parse(&bootp(
        "01010600 00000001 00000000 00000000 00000000 00000000 00000000 525400770010 00000000000000000000",
        "ff",
    ))
    .unwrap()
}

#[test]
fn ipxe_bios_discover_decodes() {
    let m = Message::parse(&ipxe_bios_discover()).unwrap();
    assert_eq!((m.op, m.htype, m.hlen, m.hops), (1, 1, 6, 0));
    assert_eq!(m.xid, 0xa15e_7c2b);
    assert_eq!(m.message_type(), Some(MessageType::Discover));
    assert_eq!(m.client_mac(), Some(FIRMWARE_MAC));
    assert!(!m.is_broadcast());
    assert!(m.sname.is_empty() && m.file.is_empty());
    let o = &m.options;
    assert_eq!(o.client_arch(), Some(0));
    assert_eq!(
        o.vendor_class(),
        Some(&b"PXEClient:Arch:00000:UNDI:002001"[..])
    );
    assert!(o.user_class_is_ipxe());
    assert_eq!(o.max_message_size(), Some(1472));
    assert_eq!(o.get(code::CLIENT_NDI), Some(&[1, 2, 1][..]));
    assert_eq!(o.client_uuid().map(<[u8]>::len), Some(17));
    assert_eq!(o.client_id(), Some(&hex("01 525400770010")[..]));
    assert_eq!(o.get(code::IPXE_ENCAP).map(<[u8]>::len), Some(32));
    let prl = o.parameter_request_list();
    assert_eq!(prl.len(), 23);
    assert!(prl.contains(&code::BOOTFILE_NAME) && prl.contains(&code::IPXE_ENCAP));
    assert_eq!(o.len(), 10);
}

#[test]
fn ovmf_uefi_discover_decodes() {
    let m = Message::parse(&ovmf_uefi_discover()).unwrap();
    assert_eq!(m.message_type(), Some(MessageType::Discover));
    assert!(m.is_broadcast());
    assert_eq!(m.secs, 4);
    let o = &m.options;
    assert_eq!(o.client_arch(), Some(7));
    assert_eq!(
        o.vendor_class(),
        Some(&b"PXEClient:Arch:00007:UNDI:003000"[..])
    );
    assert!(!o.user_class_is_ipxe());
    assert_eq!(o.get(code::CLIENT_NDI), Some(&[1, 3, 0][..]));
    assert_eq!(o.parameter_request_list().len(), 35);
    assert_eq!(o.client_uuid().map(|u| u[0]), Some(0));
}

#[test]
fn dhclient_request_decodes() {
    let m = Message::parse(&payload_of(DHCLIENT_REQUEST_FRAME)).unwrap();
    assert_eq!(m.xid, 0xb52b_173c);
    assert_eq!(m.message_type(), Some(MessageType::Request));
    assert_eq!(m.client_mac(), Some(MacAddr([2, 0x77, 0, 0, 0, 2])));
    assert_eq!(m.ciaddr, Ipv4Addr::UNSPECIFIED);
    let o = &m.options;
    assert_eq!(o.requested_ip(), Some(Ipv4Addr::new(10, 77, 0, 197)));
    assert_eq!(o.server_id(), Some(Ipv4Addr::new(10, 77, 0, 1)));
    assert_eq!(o.hostname(), Some("cli"));
    assert_eq!(
        o.parameter_request_list(),
        &[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]
    );
    assert_eq!(o.len(), 5);
}

#[test]
fn udhcpc_discover_and_udhcpd_offer_decode() {
    let d = Message::parse(&payload_of(UDHCPC_DISCOVER_FRAME)).unwrap();
    assert_eq!(d.message_type(), Some(MessageType::Discover));
    assert_eq!(d.options.max_message_size(), Some(576));
    assert_eq!(d.options.vendor_class(), Some(&b"udhcp 1.35.0"[..]));
    assert_eq!(d.options.hostname(), Some("bbcli"));
    assert_eq!(d.options.client_id(), Some(&hex("01 027700000002")[..]));

    let o = Message::parse(&payload_of(UDHCPD_OFFER_FRAME)).unwrap();
    assert_eq!(o.op, 2);
    assert_eq!(o.message_type(), Some(MessageType::Offer));
    assert_eq!(o.yiaddr, Ipv4Addr::new(10, 77, 0, 197));
    assert_eq!(o.options.u32(code::LEASE_TIME), Some(3600));
    assert_eq!(
        o.options.ipv4(code::SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 0))
    );
    assert_eq!(
        o.options.ipv4(code::ROUTER),
        Some(Ipv4Addr::new(10, 77, 0, 1))
    );
}

#[test]
fn relayed_discover_keeps_giaddr_and_option_82_last() {
    let m = Message::parse(&relayed_discover()).unwrap();
    assert_eq!(m.hops, 1);
    assert_eq!(m.giaddr, Ipv4Addr::new(10, 78, 0, 2));
    let info = m.options.relay_agent_info().unwrap();
    assert_eq!(
        info,
        &hex("01 0b 67652d302f302f372e3130 02 06 02780000aa01")[..]
    );

    // A reply echoes option 82 (RFC 3046 §2.2) and it must stay last even with higher codes.
    let mut reply = Message::new_reply(&m, MessageType::Offer);
    reply.options.set(code::RELAY_AGENT_INFO, info);
    reply.options.set_u16(code::CLIENT_ARCH, 7);
    reply
        .options
        .set_ipv4(code::SERVER_ID, Ipv4Addr::new(10, 77, 0, 1));
    let area = emitted_options(&reply);
    let mut expected = hex("35 01 02 36 04 0a4d0001 5d 02 0007 52 15");
    expected.extend_from_slice(info);
    expected.push(code::END);
    assert_eq!(area, expected);
}

#[test]
fn every_fixture_round_trips() {
    for bytes in [
        ipxe_bios_discover(),
        ovmf_uefi_discover(),
        relayed_discover(),
        overloaded_ack(),
        payload_of(DHCLIENT_REQUEST_FRAME),
        payload_of(UDHCPC_DISCOVER_FRAME),
        payload_of(UDHCPD_OFFER_FRAME),
    ] {
        let m = Message::parse(&bytes).unwrap();
        let out = emit(&m);
        assert!(out.len() >= 300);
        assert_eq!(Message::parse(&out).unwrap(), m);
    }
}

#[test]
fn emit_orders_53_then_54_then_ascending_then_end_and_pads_to_300() {
    let request = Message::parse(&payload_of(DHCLIENT_REQUEST_FRAME)).unwrap();
    let mut ack = Message::new_reply(&request, MessageType::Ack);
    ack.yiaddr = Ipv4Addr::new(10, 77, 0, 197);
    ack.options.set_u32(code::LEASE_TIME, 3600);
    ack.options.set_ipv4_list(
        code::DNS,
        &[Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(9, 9, 9, 9)],
    );
    ack.options
        .set_ipv4(code::SUBNET_MASK, Ipv4Addr::new(255, 255, 255, 0));
    ack.options
        .set_ipv4(code::SERVER_ID, Ipv4Addr::new(10, 77, 0, 1));
    ack.options.set_str(code::HOSTNAME, "cli");
    let bytes = emit(&ack);
    assert_eq!(bytes.len(), 300);
    assert_eq!(&bytes[..4], &[2, 1, 6, 0]);
    assert_eq!(&bytes[4..8], &0xb52b_173cu32.to_be_bytes());
    assert_eq!(&bytes[16..20], &[10, 77, 0, 197]);
    assert_eq!(&bytes[28..34], &[2, 0x77, 0, 0, 0, 2]);
    assert_eq!(&bytes[236..240], &[99, 130, 83, 99]);
    let expected = hex(concat!(
        "35 01 05",
        "36 04 0a4d0001",
        "01 04 ffffff00",
        "06 08 0a4d0001 09090909",
        "0c 03 636c69",
        "33 04 00000e10",
        "ff",
    ));
    assert_eq!(&bytes[240..240 + expected.len()], &expected[..]);
    assert!(bytes[240 + expected.len()..].iter().all(|&b| b == 0));
}

#[test]
fn emit_skips_pad_overload_and_end_codes() {
    let mut m = empty_request();
    for c in [code::PAD, code::OVERLOAD, code::END] {
        m.options.set(c, [1]);
    }
    assert_eq!(emitted_options(&m), [code::END]);
    assert_eq!(m.buffer_len(), 300);
}

#[test]
fn long_options_split_into_255_byte_instances() {
    let mut m = empty_request();
    let value: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    m.options.set(code::VENDOR_SPECIFIC, value.clone());
    m.options.set(code::MESSAGE, Vec::new());
    m.options.set(code::BOOTFILE_NAME, vec![b'x'; 255]);
    m.options.set(code::USER_CLASS, vec![b'y'; 256]);
    let area = emitted_options(&m);
    let mut expected = vec![43, 255];
    expected.extend_from_slice(&value[..255]);
    expected.extend_from_slice(&[43, 255]);
    expected.extend_from_slice(&value[255..510]);
    expected.extend_from_slice(&[43, 90]);
    expected.extend_from_slice(&value[510..]);
    expected.extend_from_slice(&[56, 0, 67, 255]);
    expected.extend_from_slice(&[b'x'; 255]);
    expected.extend_from_slice(&[77, 255]);
    expected.extend_from_slice(&[b'y'; 255]);
    expected.extend_from_slice(&[77, 1, b'y', code::END]);
    assert_eq!(area, expected);
    assert_round_trip(&m);
}

#[test]
fn repeated_options_are_concatenated_and_pad_skipped() {
    let bytes = bootp(
        "01010600 00000001 00000000 00000000 00000000 00000000 00000000 525400770010 00000000000000000000",
        "00 00 35 01 03 0c 03 616263 00 37 02 0103 0c 02 6465 37 01 06 ff 0c 01 7a",
    );
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(
        m.options.hostname(),
        Some("abcde"),
        "bytes after END are ignored"
    );
    assert_eq!(m.options.parameter_request_list(), &[1, 3, 6]);
    assert_eq!(m.options.len(), 3);
}

#[test]
fn missing_end_is_tolerated() {
    let bytes = bootp(
        "01010600 00000001 00000000 00000000 00000000 00000000 00000000 525400770010 00000000000000000000",
        "35 01 01 0c 02 6869",
    );
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.options.hostname(), Some("hi"));
    let no_options = &bytes[..240];
    assert!(Message::parse(no_options).unwrap().options.is_empty());
}

#[test]
fn overload_reads_file_then_sname_as_options() {
    let m = Message::parse(&overloaded_ack()).unwrap();
    assert_eq!(m.message_type(), Some(MessageType::Ack));
    assert_eq!(m.options.hostname(), Some("node-07"));
    assert_eq!(
        m.options.get(code::BOOTFILE_NAME),
        Some(&b"undionly.kpxe"[..])
    );
    assert_eq!(
        m.options.get(code::TFTP_SERVER_NAME),
        Some(&b"10.77.0.1"[..])
    );
    assert!(!m.options.contains(code::OVERLOAD));
    assert!(m.sname.is_empty() && m.file.is_empty());
    assert_eq!(m.options.server_id(), Some(Ipv4Addr::new(10, 77, 0, 1)));
    assert_round_trip(&m);
}

#[test]
fn overload_value_selects_the_fields() {
    let mut bytes = overloaded_ack();
    let overload_value = 240 + 3 + 2;
    assert_eq!(bytes[overload_value - 2..=overload_value], [52, 1, 3]);

    bytes[overload_value] = 1; // file only: sname stays a name (its bytes up to the first NUL)
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.options.hostname(), Some("node-0"));
    assert!(!m.options.contains(code::TFTP_SERVER_NAME));
    assert_eq!(m.sname, hex("0c 01 37 42 09 31302e37372e302e31 ff"));
    assert!(m.file.is_empty());

    bytes[overload_value] = 2; // sname only
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.options.hostname(), Some("node-7"));
    assert!(m.options.contains(code::TFTP_SERVER_NAME));
    assert!(!m.options.contains(code::BOOTFILE_NAME));
    assert_eq!(m.file, hex("0c 01 30 43 0d 756e64696f6e6c792e6b707865 ff"));
    assert!(m.sname.is_empty());

    bytes[overload_value] = 4; // undefined: neither field is options, and 52 is dropped
    let m = Message::parse(&bytes).unwrap();
    assert!(!m.options.contains(code::BOOTFILE_NAME));
    assert!(!m.options.contains(code::TFTP_SERVER_NAME));
    assert!(!m.options.contains(code::OVERLOAD));
    assert!(!m.sname.is_empty() && !m.file.is_empty());
}

#[test]
fn bad_option_in_an_overloaded_field_is_an_error() {
    let mut bytes = overloaded_ack();
    // file starts at 108: turn "0c 01 30" into a length running past the 128-byte field.
    bytes[108 + 1] = 200;
    assert_eq!(Message::parse(&bytes), Err(Error::BadOption));
}

#[test]
fn sname_and_file_stop_at_the_first_nul_and_emit_truncates() {
    let mut bytes = ipxe_bios_discover();
    bytes[44..51].copy_from_slice(b"abc\0def");
    bytes[108..112].copy_from_slice(b"boot");
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.sname, b"abc");
    assert_eq!(m.file, b"boot");

    let mut long = m.clone();
    long.sname = vec![b's'; 70];
    long.file = vec![b'f'; 130];
    let parsed = Message::parse(&emit(&long)).unwrap();
    assert_eq!(parsed.sname, vec![b's'; 64]);
    assert_eq!(parsed.file, vec![b'f'; 128]);
}

#[test]
fn errors_truncated_bad_magic_bad_option_oversized() {
    let good = ipxe_bios_discover();
    assert_eq!(Message::parse(&[]), Err(Error::Truncated));
    assert_eq!(Message::parse(&good[..239]), Err(Error::Truncated));
    assert!(Message::parse(&good[..240]).is_ok());

    let mut bad_magic = good.clone();
    bad_magic[239] = 0x64;
    assert_eq!(Message::parse(&bad_magic), Err(Error::BadMagic));

    // Cut inside the last option before END (UUID, 19 bytes with its header).
    assert_eq!(
        Message::parse(&good[..good.len() - 2]),
        Err(Error::BadOption)
    );
    // A code as the very last byte, with no length.
    let mut code_only = good[..good.len() - 1].to_vec();
    code_only.push(code::HOSTNAME);
    assert_eq!(Message::parse(&code_only), Err(Error::BadOption));

    let mut at_limit = good.clone();
    at_limit.resize(Message::MAX_LEN, code::PAD);
    assert!(Message::parse(&at_limit).is_ok());
    at_limit.push(code::PAD);
    assert_eq!(Message::parse(&at_limit), Err(Error::Oversized));
}

#[test]
fn new_reply_copies_only_what_rfc_2131_table_3_says() {
    let mut request = Message::parse(&relayed_discover()).unwrap();
    request.secs = 9;
    request.flags = Message::BROADCAST_FLAG;
    request.ciaddr = Ipv4Addr::new(1, 2, 3, 4);
    request.sname = b"x".to_vec();
    request.file = b"y".to_vec();
    let reply = Message::new_reply(&request, MessageType::Nak);
    assert_eq!(reply.op, 2);
    assert_eq!(
        (reply.htype, reply.hlen, reply.hops, reply.secs),
        (1, 6, 0, 0)
    );
    assert_eq!(reply.xid, request.xid);
    assert_eq!(reply.flags, Message::BROADCAST_FLAG);
    assert!(reply.is_broadcast());
    assert_eq!(reply.giaddr, request.giaddr);
    assert_eq!(reply.chaddr, request.chaddr);
    for addr in [reply.ciaddr, reply.yiaddr, reply.siaddr] {
        assert_eq!(addr, Ipv4Addr::UNSPECIFIED);
    }
    assert!(reply.sname.is_empty() && reply.file.is_empty());
    assert_eq!(
        reply.options.iter().collect::<Vec<_>>(),
        [(code::MESSAGE_TYPE, &[6u8][..])]
    );
}

#[test]
fn client_mac_needs_ethernet_htype_and_hlen() {
    let mut m = Message::parse(&ipxe_bios_discover()).unwrap();
    assert_eq!(m.client_mac(), Some(FIRMWARE_MAC));
    m.hlen = 16;
    assert_eq!(m.client_mac(), None);
    m.hlen = 6;
    m.htype = 6; // IEEE 802 networks
    assert_eq!(m.client_mac(), None);
}

#[test]
fn message_type_codes_and_names() {
    let names = [
        "discover", "offer", "request", "decline", "ack", "nak", "release", "inform",
    ];
    for (c, name) in (1u8..=8).zip(names) {
        let t = MessageType::from_code(c);
        assert_eq!(t.code(), c);
        assert_eq!(t.as_str(), name);
        assert!(!matches!(t, MessageType::Unknown(_)));
    }
    for c in [0u8, 9, 18, 255] {
        assert_eq!(MessageType::from_code(c), MessageType::Unknown(c));
        assert_eq!(MessageType::from_code(c).code(), c);
        assert_eq!(MessageType::from_code(c).as_str(), "unknown");
    }
}

#[test]
fn typed_readers_reject_wrong_lengths() {
    let mut o = Options::default();
    assert_eq!(o.message_type(), None);
    assert_eq!(o.parameter_request_list(), &[] as &[u8]);
    o.set(code::MESSAGE_TYPE, [1, 1]);
    assert_eq!(o.message_type(), None);
    o.set(code::MESSAGE_TYPE, [42]);
    assert_eq!(o.message_type(), Some(MessageType::Unknown(42)));
    o.set(code::SERVER_ID, [10, 0, 0]);
    assert_eq!(o.server_id(), None);
    o.set(code::REQUESTED_IP, [10, 0, 0, 1, 2]);
    assert_eq!(o.requested_ip(), None);
    o.set(code::MAX_MESSAGE_SIZE, [5]);
    assert_eq!(o.max_message_size(), None);
    o.set(code::LEASE_TIME, [0, 0, 1]);
    assert_eq!(o.u32(code::LEASE_TIME), None);
    o.set(code::HOSTNAME, [0xff, 0xfe]);
    assert_eq!(o.hostname(), None);
    o.set(code::HOSTNAME, []);
    assert_eq!(o.hostname(), None);

    o.set(code::CLIENT_ARCH, []);
    assert_eq!(o.client_arch(), None);
    o.set(code::CLIENT_ARCH, [0, 7, 0]);
    assert_eq!(o.client_arch(), None);
    o.set(code::CLIENT_ARCH, [0, 7, 0, 9]);
    assert_eq!(o.client_arch(), Some(7));
    o.set(code::CLIENT_ARCH, [0, 0x10]);
    assert_eq!(o.client_arch(), Some(16));
}

#[test]
fn user_class_ipxe_raw_or_rfc_3004_list() {
    let mut o = Options::default();
    assert!(!o.user_class_is_ipxe());
    for (value, expected) in [
        (&b"iPXE"[..], true),
        (b"\x04iPXE", true),
        (b"\x03foo\x04iPXE", true),
        (b"\x04iPXE\x03foo", true),
        (b"ipxe", false),
        (b"\x04gPXE", false),
        (b"\x05iPXE", false),
        (b"\x03foo\x09iPXE", false),
        (b"iPXE2", false),
        (b"", false),
    ] {
        o.set(code::USER_CLASS, value);
        assert_eq!(o.user_class_is_ipxe(), expected, "{value:?}");
    }
}

#[test]
fn writers_and_map_operations() {
    let mut o = Options::default();
    assert!(o.is_empty());
    o.set_message_type(MessageType::Inform);
    o.set_u16(code::MAX_MESSAGE_SIZE, 1500);
    o.set_u32(code::RENEWAL_TIME, 1800);
    o.set_str(code::DOMAIN_NAME, "edge.example");
    o.set_ipv4_list(code::ROUTER, &[]);
    o.set_ipv4_list(
        code::DNS,
        &[Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 4, 4)],
    );
    assert_eq!(o.get(code::MESSAGE_TYPE), Some(&[8u8][..]));
    assert_eq!(o.max_message_size(), Some(1500));
    assert_eq!(o.get(code::RENEWAL_TIME), Some(&[0, 0, 7, 8][..]));
    assert_eq!(o.get(code::DOMAIN_NAME), Some(&b"edge.example"[..]));
    assert_eq!(o.get(code::ROUTER), Some(&[][..]));
    assert_eq!(o.get(code::DNS), Some(&[1, 1, 1, 1, 8, 8, 4, 4][..]));
    assert_eq!(
        o.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        [3, 6, 15, 53, 57, 58]
    );
    assert_eq!(o.len(), 6);
    assert!(o.contains(code::ROUTER));
    assert_eq!(o.remove(code::ROUTER), Some(Vec::new()));
    assert_eq!(o.remove(code::ROUTER), None);
    assert!(!o.contains(code::ROUTER));
    o.set(code::DNS, [9, 9, 9, 9]);
    assert_eq!(o.ipv4(code::DNS), Some(Ipv4Addr::new(9, 9, 9, 9)));
    assert_eq!(o.len(), 5);
}

fn arb_message() -> impl Strategy<Value = Message> {
    let codes = (1u8..=254).prop_filter("overload is never kept", |c| *c != code::OVERLOAD);
    (
        any::<[u8; 4]>(),
        (any::<u32>(), any::<u16>(), any::<u16>()),
        any::<[u32; 4]>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(1u8..=255, 0..=64),
        proptest::collection::vec(1u8..=255, 0..=128),
        proptest::collection::btree_map(
            codes,
            proptest::collection::vec(any::<u8>(), 0..300),
            0..12,
        ),
    )
        .prop_map(
            |([op, htype, hlen, hops], (xid, secs, flags), addrs, chaddr, sname, file, entries)| {
                Message {
                    op,
                    htype,
                    hlen,
                    hops,
                    xid,
                    secs,
                    flags,
                    ciaddr: Ipv4Addr::from(addrs[0]),
                    yiaddr: Ipv4Addr::from(addrs[1]),
                    siaddr: Ipv4Addr::from(addrs[2]),
                    giaddr: Ipv4Addr::from(addrs[3]),
                    chaddr,
                    sname,
                    file,
                    options: Options { entries },
                }
            },
        )
}

proptest! {
    #[test]
    fn parse_inverts_emit(m in arb_message()) {
        let mut out = vec![0xAA];
        m.emit(&mut out);
        prop_assert_eq!(out.len(), 1 + m.buffer_len());
        prop_assert_eq!(Message::parse(&out[1..]), Ok(m));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
        let _ = Message::parse(&bytes);
    }

    /// Past the cookie, so the option decoder sees arbitrary bytes too.
    #[test]
    fn parse_never_panics_on_arbitrary_options(
        head in proptest::collection::vec(any::<u8>(), 236),
        options in proptest::collection::vec(any::<u8>(), 0..600),
        overload in 0u8..=4,
    ) {
        let mut bytes = head;
        bytes.extend_from_slice(&[99, 130, 83, 99, 52, 1, overload]);
        bytes.extend_from_slice(&options);
        if let Ok(m) = Message::parse(&bytes) {
            let again = Message::parse(&emit(&m));
            prop_assert_eq!(again, Ok(m));
        }
    }
}
