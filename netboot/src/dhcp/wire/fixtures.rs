//! Packet fixtures for tests: frames captured from real clients, and firmware DISCOVERs laid out
//! byte for byte as the harness pcaps show them (`/work/shared/harness/REPORT.md` §4).
//!
//! The captured frames were recorded with tshark on a veth pair between two network namespaces:
//! ISC dhclient 4.4.3 (Debian's stock `dhclient.conf`, `send host-name "cli"`) and busybox 1.35
//! `udhcpc -x hostname:bbcli` against busybox `udhcpd`. tshark reported every IPv4 and UDP
//! checksum in them as correct.

/// Decodes hex, ignoring whitespace.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(pair, 16).unwrap()
        })
        .collect()
}

/// A BOOTP message: the first 44 header bytes (`op` through `chaddr`), zeroed `sname` and
/// `file`, the magic cookie, then `options`.
pub(crate) fn bootp(head: &str, options: &str) -> Vec<u8> {
    let mut out = hex(head);
    assert_eq!(out.len(), 44, "op..chaddr is 44 bytes");
    out.resize(44 + 64 + 128, 0);
    out.extend_from_slice(&[99, 130, 83, 99]);
    out.extend_from_slice(&hex(options));
    out
}

/// ISC dhclient 4.4.3 DHCPREQUEST (SELECTING) as a whole Ethernet frame, 342 bytes: TOS 0x10,
/// TTL 128; options 53=3, 54=10.77.0.1, 50=10.77.0.197, 12="cli", 55 (13 codes); padded to 300.
pub(crate) const DHCLIENT_REQUEST_FRAME: &str = concat!(
    "ffffffffffff027700000002080045100148000000008011399600000000ffff",
    "ffff0044004301342dfb01010600b52b173c0000000000000000000000000000",
    "0000000000000277000000020000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000006382536335010336040a",
    "4d000132040a4d00c50c03636c69370d011c02030f06770c2c2f1a792aff0000",
    "00000000000000000000000000000000000000000000",
);

/// busybox udhcpd DHCPOFFER as a whole Ethernet frame, 342 bytes: broadcast, TOS 0, TTL 64,
/// identification 0: exactly the header fields `UdpFrame::emit` writes.
pub(crate) const UDHCPD_OFFER_FRAME: &str = concat!(
    "ffffffffffff0277000000010800450001480000000040116f580a4d0001ffff",
    "ffff004300440134644902010600b52b173c00000000000000000a4d00c50000",
    "0000000000000277000000020000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000006382536335010236040a",
    "4d0001330400000e100104ffffff0003040a4d0001ff00000000000000000000",
    "00000000000000000000000000000000000000000000",
);

/// busybox udhcpc 1.35 DHCPDISCOVER as a whole Ethernet frame, 342 bytes: options 53, 57=576,
/// 55, 12="bbcli", 60="udhcp 1.35.0", 61=01:<mac>.
pub(crate) const UDHCPC_DISCOVER_FRAME: &str = concat!(
    "ffffffffffff02770000000208004500014800000000401179a600000000ffff",
    "ffff0044004301342600010106000f3391100000000000000000000000000000",
    "0000000000000277000000020000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000063825363350101390202",
    "4037070103060c0f1c2a0c056262636c693c0c756468637020312e33352e303d",
    "0701027700000002ff00000000000000000000000000",
);

/// The UDP payload (the DHCP message) of a captured frame.
pub(crate) fn payload_of(frame_hex: &str) -> Vec<u8> {
    hex(frame_hex)[42..].to_vec()
}

/// SeaBIOS + iPXE ROM (e1000) first DHCPDISCOVER: broadcast flag clear, option order as iPXE
/// writes it.
pub(crate) fn ipxe_bios_discover() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",                         // BOOTREQUEST, Ethernet, hlen 6, hops 0
            "a1 5e 7c 2b",                         // xid
            "00 00 00 00", // secs 0, flags 0 (iPXE asks for unicast replies)
            "00000000 00000000 00000000 00000000", // ciaddr yiaddr siaddr giaddr
            "525400770010 00000000000000000000", // chaddr
        ),
        concat!(
            "35 01 01",       // 53 DISCOVER
            "39 02 05 c0",    // 57 max message size 1472
            "5d 02 00 00",    // 93 arch 0: x86 BIOS
            "5e 03 01 02 01", // 94 NDI: UNDI 2.1
            "3c 20 505845436c69656e743a417263683a30303030303a554e44493a303032303031",
            "4d 04 69505845", // 77 user class, raw "iPXE"
            "af 20 eb03010000 170101 150101 130101 110101 180101 190101 1f0101 210101 240101",
            "37 17 01 03 06 07 0c 0f 11 1a 2b 3c 42 43 77 80 81 82 83 84 85 86 87 af cb",
            "3d 07 01 525400770010", // 61 client id: type 1 + MAC
            "61 11 00 00000000000000000000000000000000", // 97 UUID (all zero without -uuid)
            "ff",
        ),
    )
}

/// OVMF native PxeBcDxe (virtio-net) first DHCPDISCOVER: broadcast flag set, arch 7, no user
/// class.
pub(crate) fn ovmf_uefi_discover() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",
            "4e 9c 02 d7",
            "00 04 80 00", // secs 4, BROADCAST
            "00000000 00000000 00000000 00000000",
            "525400770010 00000000000000000000",
        ),
        concat!(
            "35 01 01",
            "39 02 05 c0",
            "37 23 01 02 03 04 05 06 0c 0d 0f 11 12 16 17 1c 28 29 2a 2b 32 33 36 3a 3b 3c 42 43",
            "      61 80 81 82 83 84 85 86 87",
            "61 11 00 8b5e3a41c2d74f0e9a6b1c2d3e4f5061", // 97 UUID
            "5e 03 01 03 00",                            // 94 NDI: UNDI 3.0
            "5d 02 00 07",                               // 93 arch 7: EFI x64
            "3c 20 505845436c69656e743a417263683a30303030373a554e44493a303033303030",
            "ff",
        ),
    )
}

/// SeaBIOS + iPXE ROM DHCPREQUEST (SELECTING) after an OFFER of 10.77.0.100 from 10.77.0.1:
/// the DISCOVER's options in iPXE's order, then 54 (server id) and 50 (requested address), as
/// iPXE appends them.
pub(crate) fn ipxe_bios_request() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",
            "a1 5e 7c 2b", // same xid as the DISCOVER
            "00 00 00 00",
            "00000000 00000000 00000000 00000000",
            "525400770010 00000000000000000000",
        ),
        concat!(
            "35 01 03",       // 53 REQUEST
            "39 02 05 c0",    // 57 max message size 1472
            "5d 02 00 00",    // 93 arch 0: x86 BIOS
            "5e 03 01 02 01", // 94 NDI: UNDI 2.1
            "3c 20 505845436c69656e743a417263683a30303030303a554e44493a303032303031",
            "4d 04 69505845", // 77 user class, raw "iPXE"
            "af 20 eb03010000 170101 150101 130101 110101 180101 190101 1f0101 210101 240101",
            "37 17 01 03 06 07 0c 0f 11 1a 2b 3c 42 43 77 80 81 82 83 84 85 86 87 af cb",
            "3d 07 01 525400770010",
            "61 11 00 00000000000000000000000000000000",
            "36 04 0a4d0001", // 54 server id 10.77.0.1
            "32 04 0a4d0064", // 50 requested 10.77.0.100
            "ff",
        ),
    )
}

/// iPXE's EFI driver (from the e1000 ROM, under OVMF) first DHCPDISCOVER: arch 7, UNDI 3.10,
/// user class `iPXE` and the option 175 feature list, as the pcaps in the harness report show.
pub(crate) fn ipxe_efi_discover() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",
            "5c 31 9e 04",
            "00 00 00 00",
            "00000000 00000000 00000000 00000000",
            "525400770011 00000000000000000000",
        ),
        concat!(
            "35 01 01",
            "39 02 05 c0",
            "5d 02 00 07",    // 93 arch 7: EFI x64
            "5e 03 01 03 0a", // 94 NDI: UNDI 3.10
            "3c 20 505845436c69656e743a417263683a30303030373a554e44493a303033303130",
            "4d 04 69505845",
            "af 20 eb03010000 170101 150101 130101 110101 180101 190101 1f0101 210101 240101",
            "37 17 01 03 06 07 0c 0f 11 1a 2b 3c 42 43 77 80 81 82 83 84 85 86 87 af cb",
            "3d 07 01 525400770011",
            "61 11 00 00000000000000000000000000000000",
            "ff",
        ),
    )
}

/// A PXE 2.1 BIOS ROM (no iPXE) DHCPDISCOVER: arch 0 and the PXEClient class, without the
/// `iPXE` user class and option 175; laid out like the iPXE ROM's DISCOVER minus those two.
pub(crate) fn pxe_bios_discover() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",
            "0f 3c 21 7a",
            "00 04 80 00", // secs 4, BROADCAST
            "00000000 00000000 00000000 00000000",
            "525400770012 00000000000000000000",
        ),
        concat!(
            "35 01 01",
            "39 02 05 c0",
            "5d 02 00 00",
            "5e 03 01 02 01",
            "3c 20 505845436c69656e743a417263683a30303030303a554e44493a303032303031",
            "37 11 01 02 03 05 06 0b 0c 0d 0f 10 11 12 2b 36 3c 43 80",
            "61 11 00 8b5e3a41c2d74f0e9a6b1c2d3e4f5062",
            "ff",
        ),
    )
}

/// OVMF native PxeBcDxe DHCPREQUEST after an OFFER of 10.77.0.101 from 10.77.0.1: arch 7,
/// broadcast, the DISCOVER's options plus 50 and 54.
pub(crate) fn ovmf_uefi_request() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 00",
            "4e 9c 02 d7",
            "00 04 80 00",
            "00000000 00000000 00000000 00000000",
            "525400770010 00000000000000000000",
        ),
        concat!(
            "35 01 03",
            "36 04 0a4d0001",
            "32 04 0a4d0065",
            "39 02 05 c0",
            "37 23 01 02 03 04 05 06 0c 0d 0f 11 12 16 17 1c 28 29 2a 2b 32 33 36 3a 3b 3c 42 43",
            "      61 80 81 82 83 84 85 86 87",
            "61 11 00 8b5e3a41c2d74f0e9a6b1c2d3e4f5061",
            "5e 03 01 03 00",
            "5d 02 00 07",
            "3c 20 505845436c69656e743a417263683a30303030373a554e44493a303033303030",
            "ff",
        ),
    )
}

/// A DHCPDISCOVER relayed once: hops 1, giaddr 10.78.0.2, option 82 appended before END with a
/// circuit id ("ge-0/0/7.10") and a remote id (the relay's MAC).
pub(crate) fn relayed_discover() -> Vec<u8> {
    bootp(
        concat!(
            "01 01 06 01", // hops 1
            "00 00 30 39",
            "00 00 00 00",
            "00000000 00000000 00000000 0a4e0002", // giaddr 10.78.0.2
            "000c01020304 00000000000000000000",
        ),
        concat!(
            "35 01 01",
            "37 04 01 03 06 0f",
            "52 15 01 0b 67652d302f302f372e3130 02 06 02780000aa01",
            "ff",
        ),
    )
}

/// A DHCPACK with option overload 3: the hostname is split across the options field ("node-"),
/// `file` ("0") and `sname` ("7"), so only the RFC 3396 order (options, `file`, `sname`) gives
/// "node-07"; `file` also holds option 67 and `sname` option 66.
pub(crate) fn overloaded_ack() -> Vec<u8> {
    let mut out = hex(concat!(
        "02 01 06 00",
        "00 00 30 39",
        "00 00 00 00",
        "00000000 0a4d0091 0a4d0001 00000000",
        "525400770010 00000000000000000000",
    ));
    let mut sname = hex("0c 01 37 42 09 31302e37372e302e31 ff"); // 12 "7", 66 "10.77.0.1"
    sname.resize(64, 0);
    let mut file = hex("0c 01 30 43 0d 756e64696f6e6c792e6b707865 ff"); // 12 "0", 67 "undionly.kpxe"
    file.resize(128, 0);
    out.extend_from_slice(&sname);
    out.extend_from_slice(&file);
    out.extend_from_slice(&[99, 130, 83, 99]);
    out.extend_from_slice(&hex("35 01 05 34 01 03 0c 05 6e6f64652d 36 04 0a4d0001 ff"));
    out
}

/// A client's broadcast frame around `payload` (port 68 to 67), as the server receives it.
pub(crate) fn client_frame(payload: &[u8]) -> Vec<u8> {
    let frame = crate::dhcp::frame::UdpFrame {
        src_mac: ims_proto::MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x10]),
        dst_mac: ims_proto::MacAddr::BROADCAST,
        src_ip: std::net::Ipv4Addr::UNSPECIFIED,
        dst_ip: std::net::Ipv4Addr::BROADCAST,
        src_port: 68,
        dst_port: 67,
        payload,
    };
    let mut out = Vec::new();
    frame.emit(&mut out);
    out
}

/// The seed corpus of the fuzz targets: `(target, file name, bytes)`.
pub(crate) fn fuzz_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut vlan = hex(DHCLIENT_REQUEST_FRAME);
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    vec![
        ("dhcp_message", "ipxe_bios_discover", ipxe_bios_discover()),
        ("dhcp_message", "ovmf_uefi_discover", ovmf_uefi_discover()),
        ("dhcp_message", "ipxe_bios_request", ipxe_bios_request()),
        ("dhcp_message", "ipxe_efi_discover", ipxe_efi_discover()),
        ("dhcp_message", "pxe_bios_discover", pxe_bios_discover()),
        ("dhcp_message", "ovmf_uefi_request", ovmf_uefi_request()),
        ("dhcp_message", "relayed_discover", relayed_discover()),
        ("dhcp_message", "overloaded_ack", overloaded_ack()),
        (
            "dhcp_message",
            "dhclient_request",
            payload_of(DHCLIENT_REQUEST_FRAME),
        ),
        (
            "dhcp_message",
            "udhcpc_discover",
            payload_of(UDHCPC_DISCOVER_FRAME),
        ),
        (
            "dhcp_message",
            "udhcpd_offer",
            payload_of(UDHCPD_OFFER_FRAME),
        ),
        ("udp_frame", "dhclient_request", hex(DHCLIENT_REQUEST_FRAME)),
        ("udp_frame", "udhcpc_discover", hex(UDHCPC_DISCOVER_FRAME)),
        ("udp_frame", "udhcpd_offer", hex(UDHCPD_OFFER_FRAME)),
        ("udp_frame", "dhclient_request_vlan10", vlan),
        (
            "udp_frame",
            "ipxe_bios_discover",
            client_frame(&ipxe_bios_discover()),
        ),
        (
            "udp_frame",
            "ovmf_uefi_discover",
            client_frame(&ovmf_uefi_discover()),
        ),
        (
            "udp_frame",
            "ipxe_bios_request",
            client_frame(&ipxe_bios_request()),
        ),
        (
            "udp_frame",
            "ipxe_efi_discover",
            client_frame(&ipxe_efi_discover()),
        ),
        (
            "udp_frame",
            "pxe_bios_discover",
            client_frame(&pxe_bios_discover()),
        ),
        (
            "udp_frame",
            "ovmf_uefi_request",
            client_frame(&ovmf_uefi_request()),
        ),
    ]
}

/// The committed seed corpus under `fuzz/corpus/` must hold exactly these fixtures; run with
/// `IMS_WRITE_FUZZ_SEEDS=1` to rewrite it after changing a fixture.
#[test]
fn fuzz_seed_corpus_matches_the_fixtures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("IMS_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in fuzz_seeds() {
        let path = root.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with IMS_WRITE_FUZZ_SEEDS=1", path.display()));
        assert!(
            committed == bytes,
            "{} differs from its fixture",
            path.display()
        );
    }
}

/// The firmware REQUEST/DISCOVER seeds decode as what they claim to be.
#[test]
fn firmware_seed_fixtures_decode() {
    use super::{Message, MessageType, code};
    use std::net::Ipv4Addr;
    /// Bytes, type, arch, iPXE (user class and option 175), requested address.
    type Case = (Vec<u8>, MessageType, u16, bool, Option<Ipv4Addr>);
    let cases: [Case; 4] = [
        (
            ipxe_bios_request(),
            MessageType::Request,
            0,
            true,
            Some(Ipv4Addr::new(10, 77, 0, 100)),
        ),
        (ipxe_efi_discover(), MessageType::Discover, 7, true, None),
        (pxe_bios_discover(), MessageType::Discover, 0, false, None),
        (
            ovmf_uefi_request(),
            MessageType::Request,
            7,
            false,
            Some(Ipv4Addr::new(10, 77, 0, 101)),
        ),
    ];
    for (bytes, kind, arch, ipxe, requested) in cases {
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.message_type(), Some(kind));
        assert_eq!(m.options.client_arch(), Some(arch));
        assert_eq!(m.options.user_class_is_ipxe(), ipxe);
        assert_eq!(m.options.get(code::IPXE_ENCAP).is_some(), ipxe);
        assert_eq!(m.options.requested_ip(), requested);
    }
}
