//! PXE, UEFI HTTP boot and iPXE answers as they appear on the wire.

use super::*;

fn pxe_discover(mac: MacAddr, arch: u16) -> Message {
    let mut d = msg(mac, MessageType::Discover);
    d.flags = Message::BROADCAST_FLAG;
    d.options.set_u16(code::CLIENT_ARCH, arch);
    d.options.set(code::CLIENT_NDI, vec![1, 3, 16]);
    let mut uuid = vec![0u8];
    uuid.extend_from_slice(&[0x11; 16]);
    d.options.set(code::CLIENT_UUID, uuid);
    let vendor = if matches!(arch, 16 | 19) {
        format!("HTTPClient:Arch:{arch:05}:UNDI:003016")
    } else {
        format!("PXEClient:Arch:{arch:05}:UNDI:003016")
    };
    d.options.set_str(code::VENDOR_CLASS, &vendor);
    d.options.set(
        code::PARAMETER_REQUEST_LIST,
        vec![1, 3, 6, 43, 60, 66, 67, 128, 129],
    );
    d
}

fn offer_for(site: &mut Site, d: &Message) -> Message {
    let (dest, offer) = only_reply(&site.link(d));
    assert_eq!(dest, link_broadcast());
    offer
}

fn boot_file(m: &Message) -> Option<String> {
    m.options
        .get(code::BOOTFILE_NAME)
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
}

#[test]
fn pxe_arches_get_their_tftp_file() {
    for (arch, file) in [
        (0u16, "undionly.kpxe"),
        (7, "ipxe.efi"),
        (9, "ipxe.efi"),
        (11, "arm64/ipxe.efi"),
    ] {
        let mut site = Site::new();
        let offer = offer_for(&mut site, &pxe_discover(RESERVED, arch));
        assert_eq!(boot_file(&offer).as_deref(), Some(file), "arch {arch}");
        assert_eq!(offer.file, file.as_bytes(), "arch {arch}");
        assert_eq!(offer.siaddr, SERVER);
        assert_eq!(offer.sname, b"10.0.0.1");
        assert_eq!(
            offer.options.get(code::TFTP_SERVER_NAME),
            Some(&b"10.0.0.1"[..])
        );
        assert_eq!(
            offer.options.get(code::VENDOR_CLASS),
            Some(&b"PXEClient"[..])
        );
        assert_eq!(
            offer.options.get(code::VENDOR_SPECIFIC),
            Some(&[6, 1, 8, 255][..])
        );
        assert!(!offer.options.contains(code::IPXE_ENCAP));
        // The ACK carries the same, and the lease records it.
        let mut r = pxe_discover(RESERVED, arch);
        r.options.set_message_type(MessageType::Request);
        r.options.set_ipv4(code::SERVER_ID, SERVER);
        r.options.set_ipv4(code::REQUESTED_IP, offer.yiaddr);
        let cmds = site.link(&r);
        let lease = &persisted(&cmds)[0];
        assert_eq!(lease.boot_file.as_deref(), Some(file));
        assert_eq!(lease.next_server, Some(SERVER));
        assert_eq!(lease.arch, Some(arch));
        assert_eq!(lease.uuid.as_ref().map(Vec::len), Some(17));
        let (_, ack) = only_reply(&cmds);
        assert_eq!(boot_file(&ack).as_deref(), Some(file));
        assert_eq!(ack.siaddr, SERVER);
    }
}

#[test]
fn unsupported_arch_gets_an_address_only() {
    let mut site = Site::new();
    let offer = offer_for(&mut site, &pxe_discover(RESERVED, 6));
    assert_eq!(offer.yiaddr, ip("10.0.0.50"));
    assert_eq!(boot_file(&offer), None);
    assert!(offer.file.is_empty());
    assert!(!offer.options.contains(code::VENDOR_CLASS));
}

#[test]
fn http_boot_gets_a_url_and_httpclient() {
    for arch in [16u16, 19] {
        let mut site = Site::new();
        let offer = offer_for(&mut site, &pxe_discover(DYNAMIC, arch));
        // No http_arm64 in the default profile: arch 19 falls back to http.
        assert_eq!(
            boot_file(&offer).as_deref(),
            Some("http://10.0.0.1:8080/ipxe.efi")
        );
        assert_eq!(offer.file, b"http://10.0.0.1:8080/ipxe.efi");
        assert_eq!(
            offer.options.get(code::VENDOR_CLASS),
            Some(&b"HTTPClient"[..])
        );
        assert!(!offer.options.contains(code::TFTP_SERVER_NAME));
        assert!(!offer.options.contains(code::VENDOR_SPECIFIC));
        assert!(offer.sname.is_empty());
        assert_eq!(offer.siaddr, SERVER);
    }
}

#[test]
fn ipxe_gets_the_script_and_no_pxedhcp() {
    let mut site = Site::new();
    let mut d = pxe_discover(RESERVED, 7);
    d.options.set(code::USER_CLASS, b"iPXE".to_vec());
    let offer = offer_for(&mut site, &d);
    assert_eq!(
        boot_file(&offer).as_deref(),
        Some("http://10.0.0.1:8080/boot.ipxe")
    );
    assert_eq!(offer.options.get(code::IPXE_ENCAP), Some(&[176, 1, 1][..]));
    assert!(!offer.options.contains(code::TFTP_SERVER_NAME));
}

#[test]
fn netboot_off_gets_an_address_only() {
    let mut site = Site::new();
    let offer = offer_for(&mut site, &pxe_discover(INSTALLED, 7));
    assert_eq!(offer.yiaddr, ip("10.0.0.100"));
    assert_eq!(boot_file(&offer), None);
    assert!(offer.file.is_empty());
    assert_eq!(offer.siaddr, Ipv4Addr::UNSPECIFIED);
    assert!(!offer.options.contains(code::VENDOR_CLASS));
    assert!(!offer.options.contains(code::VENDOR_SPECIFIC));
}

#[test]
fn profile_resolution_machine_then_subnet_then_default() {
    // ARM names profile "arm".
    let mut site = Site::new();
    let offer = offer_for(&mut site, &pxe_discover(ARM, 11));
    assert_eq!(boot_file(&offer).as_deref(), Some("grubaa64.efi"));
    // "arm" has no uefi_x64: address only.
    let offer = offer_for(&mut site, &pxe_discover(ARM, 7));
    assert_eq!(boot_file(&offer), None);
    // A subnet profile applies to machines naming none; next_server overrides siaddr.
    let mut cfg = config();
    cfg.subnets[0].boot_profile = Some("arm".into());
    cfg.subnets[0].next_server = Some(ip("10.0.0.9"));
    let mut site = Site::with(cfg, vec![]);
    let offer = offer_for(&mut site, &pxe_discover(DYNAMIC, 11));
    assert_eq!(boot_file(&offer).as_deref(), Some("grubaa64.efi"));
    assert_eq!(offer.siaddr, ip("10.0.0.9"));
    assert_eq!(offer.sname, b"10.0.0.9");
    assert_eq!(offer.options.server_id(), Some(SERVER));
    // No default profile and none named: address only.
    let mut cfg = config();
    cfg.boot_profiles.remove("default");
    let mut site = Site::with(cfg, vec![]);
    let offer = offer_for(&mut site, &pxe_discover(DYNAMIC, 7));
    assert_eq!(boot_file(&offer), None);
}

#[test]
fn long_boot_file_goes_in_option_67_only() {
    let mut cfg = config();
    let long = format!("http://10.0.0.1/{}", "x".repeat(150));
    if let Some(p) = cfg.boot_profiles.get_mut("default") {
        p.http = Some(long.clone());
    }
    let mut site = Site::with(cfg, vec![]);
    let offer = offer_for(&mut site, &pxe_discover(DYNAMIC, 16));
    assert_eq!(boot_file(&offer), Some(long));
    assert!(offer.file.is_empty());
}
