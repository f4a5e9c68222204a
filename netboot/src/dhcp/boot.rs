//! The PXE boot-file decision (RFC 4578 client architecture, PXE and UEFI HTTP boot, iPXE).
//!
//! [`decide`] is a pure function of the machine's boot profile, whether the machine should netboot
//! at all, and the client's request options. It picks the file (or URL) and the vendor options that
//! go with it; the server turns the [`BootDecision`] into reply fields and options.
//!
//! Order of the rules:
//! 1. No profile, or the machine must not netboot → address only.
//! 2. iPXE (user class 77 `iPXE`) → the profile's `ipxe_script` (this breaks the
//!    firmware → iPXE → firmware chainload loop), with iPXE's no-ProxyDHCP setting.
//! 3. UEFI HTTP boot (arch 16 x64, arch 19 arm64, or vendor class `HTTPClient…`) → `http`
//!    (`http_arm64` first for arch 19), answered with vendor class `HTTPClient`.
//! 4. PXE by arch (option 93, else the `Arch:` field of a `PXEClient:Arch:xxxxx:…` vendor class):
//!    0 → `bios`, 7 and 9 → `uefi_x64`, 11 → `uefi_arm64`; other arches get nothing.
//! 5. Neither option 93 nor a `PXEClient`/`HTTPClient` vendor class (a plain DHCP client such as
//!    dhclient) → address only.
//!
//! A `PXEClient` gets option 60 `PXEClient` echoed and option 43 with PXE discovery control 8
//! (boot from the file in this reply; no boot server discovery) whenever a file is chosen.

use super::wire::Options;
use crate::config::BootProfile;

/// Vendor class prefix of PXE firmware (option 60).
const PXE_CLIENT: &[u8] = b"PXEClient";
/// Vendor class prefix of UEFI HTTP boot firmware (option 60).
const HTTP_CLIENT: &[u8] = b"HTTPClient";

/// How the chosen boot file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A file name served by the next server over TFTP (options 66/67, `sname`/`file`).
    Tftp,
    /// A URL (UEFI HTTP boot, or an iPXE script fetched over HTTP).
    Http,
}

/// What the server puts in the reply for booting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootDecision {
    /// The boot file name or URL, with how it is fetched; `None` = address only.
    pub boot_file: Option<(String, Transport)>,
    /// Vendor class identifier to answer with (option 60): `PXEClient` or `HTTPClient`.
    pub vendor_class: Option<&'static str>,
    /// Add option 43 with PXE discovery control = 8 (skip boot server discovery).
    pub pxe_discovery_control: bool,
    /// Add option 175 sub-option 176 (iPXE `no-pxedhcp`) = 1 so iPXE does not wait for ProxyDHCP.
    pub ipxe_no_pxedhcp: bool,
    /// The client architecture the decision used (option 93, or the vendor class `Arch:` field).
    pub arch: Option<u16>,
    /// The profile field that was needed but is unset (for a warning), e.g. `"uefi_x64"`.
    pub missing: Option<&'static str>,
}

/// Decide the boot file for a client.
///
/// `profile` is the machine's resolved boot profile (`None` when the client is unknown or no
/// profile applies); `machine_netboot` is the machine's `netboot` flag; `request` the client's
/// options.
pub fn decide(
    profile: Option<&BootProfile>,
    machine_netboot: bool,
    request: &Options,
) -> BootDecision {
    let vendor = request.vendor_class().unwrap_or_default();
    let is_pxe = vendor.starts_with(PXE_CLIENT);
    let is_http = vendor.starts_with(HTTP_CLIENT);
    let arch = request
        .client_arch()
        .or_else(|| arch_from_vendor_class(vendor));
    let mut decision = BootDecision {
        arch,
        ..BootDecision::default()
    };
    let Some(profile) = profile.filter(|_| machine_netboot) else {
        return decision;
    };

    let (field, file): (&'static str, Option<&String>) = if request.user_class_is_ipxe() {
        decision.ipxe_no_pxedhcp = true;
        ("ipxe_script", profile.ipxe_script.as_ref())
    } else if arch == Some(19) {
        (
            "http_arm64",
            profile.http_arm64.as_ref().or(profile.http.as_ref()),
        )
    } else if arch == Some(16) || is_http {
        ("http", profile.http.as_ref())
    } else if request.client_arch().is_none() && !is_pxe {
        // A plain DHCP client: no boot file.
        return decision;
    } else {
        match arch {
            Some(0) => ("bios", profile.bios.as_ref()),
            Some(7 | 9) => ("uefi_x64", profile.uefi_x64.as_ref()),
            Some(11) => ("uefi_arm64", profile.uefi_arm64.as_ref()),
            _ => return decision,
        }
    };
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        decision.missing = Some(field);
        decision.ipxe_no_pxedhcp = false;
        return decision;
    };

    let http_boot = !decision.ipxe_no_pxedhcp && (arch == Some(16) || arch == Some(19) || is_http);
    let transport = if http_boot || file.contains("://") {
        Transport::Http
    } else {
        Transport::Tftp
    };
    decision.boot_file = Some((file.clone(), transport));
    if http_boot {
        decision.vendor_class = Some("HTTPClient");
    } else if is_pxe {
        decision.vendor_class = Some("PXEClient");
        decision.pxe_discovery_control = true;
    }
    decision
}

/// The architecture in a PXE vendor class such as `PXEClient:Arch:00007:UNDI:003016`.
fn arch_from_vendor_class(vendor: &[u8]) -> Option<u16> {
    let rest = vendor.strip_prefix(PXE_CLIENT)?.strip_prefix(b":Arch:")?;
    let digits = rest.get(..5)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::wire::code;

    fn profile() -> BootProfile {
        BootProfile {
            name: "default".into(),
            bios: Some("undionly.kpxe".into()),
            uefi_x64: Some("ipxe.efi".into()),
            uefi_arm64: Some("ipxe-arm64.efi".into()),
            http: Some("http://10.0.0.1/ipxe.efi".into()),
            http_arm64: Some("http://10.0.0.1/ipxe-arm64.efi".into()),
            ipxe_script: Some("http://10.0.0.1/boot.ipxe".into()),
            ..BootProfile::default()
        }
    }

    fn req(arch: Option<u16>, vendor: Option<&str>, ipxe: bool) -> Options {
        let mut o = Options::default();
        if let Some(a) = arch {
            o.set_u16(code::CLIENT_ARCH, a);
        }
        if let Some(v) = vendor {
            o.set_str(code::VENDOR_CLASS, v);
        }
        if ipxe {
            // iPXE sends its user class as the bare string.
            o.set(code::USER_CLASS, b"iPXE".to_vec());
        }
        o
    }

    fn file(d: &BootDecision) -> Option<(&str, Transport)> {
        d.boot_file.as_ref().map(|(f, t)| (f.as_str(), *t))
    }

    #[test]
    fn pxe_arches() {
        let p = profile();
        for (arch, want) in [
            (0, "undionly.kpxe"),
            (7, "ipxe.efi"),
            (9, "ipxe.efi"),
            (11, "ipxe-arm64.efi"),
        ] {
            let vendor = format!("PXEClient:Arch:{arch:05}:UNDI:003016");
            let d = decide(Some(&p), true, &req(Some(arch), Some(&vendor), false));
            assert_eq!(file(&d), Some((want, Transport::Tftp)), "arch {arch}");
            assert_eq!(d.vendor_class, Some("PXEClient"));
            assert!(d.pxe_discovery_control);
            assert!(!d.ipxe_no_pxedhcp);
            assert_eq!(d.arch, Some(arch));
        }
        // Unknown arch: nothing.
        let d = decide(Some(&p), true, &req(Some(6), Some("PXEClient"), false));
        assert_eq!(d.boot_file, None);
        assert_eq!(d.vendor_class, None);
    }

    #[test]
    fn http_boot() {
        let p = profile();
        let d = decide(
            Some(&p),
            true,
            &req(Some(16), Some("HTTPClient:Arch:00016"), false),
        );
        assert_eq!(
            file(&d),
            Some(("http://10.0.0.1/ipxe.efi", Transport::Http))
        );
        assert_eq!(d.vendor_class, Some("HTTPClient"));
        assert!(!d.pxe_discovery_control);
        let d = decide(Some(&p), true, &req(Some(19), None, false));
        assert_eq!(
            file(&d),
            Some(("http://10.0.0.1/ipxe-arm64.efi", Transport::Http))
        );
        let mut no_arm = profile();
        no_arm.http_arm64 = None;
        let d = decide(Some(&no_arm), true, &req(Some(19), None, false));
        assert_eq!(
            file(&d),
            Some(("http://10.0.0.1/ipxe.efi", Transport::Http))
        );
        // Vendor class alone selects HTTP.
        let d = decide(Some(&p), true, &req(None, Some("HTTPClient"), false));
        assert_eq!(
            file(&d),
            Some(("http://10.0.0.1/ipxe.efi", Transport::Http))
        );
        assert_eq!(d.vendor_class, Some("HTTPClient"));
    }

    #[test]
    fn ipxe_gets_script_and_no_pxedhcp() {
        let p = profile();
        let d = decide(
            Some(&p),
            true,
            &req(Some(7), Some("PXEClient:Arch:00007:UNDI:003010"), true),
        );
        assert_eq!(
            file(&d),
            Some(("http://10.0.0.1/boot.ipxe", Transport::Http))
        );
        assert!(d.ipxe_no_pxedhcp);
        assert_eq!(d.vendor_class, Some("PXEClient"));
        let mut unset = profile();
        unset.ipxe_script = None;
        let d = decide(Some(&unset), true, &req(Some(7), Some("PXEClient"), true));
        assert_eq!(d.boot_file, None);
        assert_eq!(d.missing, Some("ipxe_script"));
        assert!(!d.ipxe_no_pxedhcp);
    }

    #[test]
    fn address_only_cases() {
        let p = profile();
        let pxe = req(Some(0), Some("PXEClient:Arch:00000:UNDI:002001"), false);
        assert_eq!(decide(Some(&p), false, &pxe).boot_file, None);
        assert_eq!(decide(None, true, &pxe).boot_file, None);
        assert_eq!(decide(None, true, &pxe).vendor_class, None);
        // dhclient: no 93, no PXE vendor class.
        let plain = req(None, Some("dhcpcd-9.4.1"), false);
        assert_eq!(decide(Some(&p), true, &plain), BootDecision::default());
        assert_eq!(
            decide(Some(&p), true, &Options::default()),
            BootDecision::default()
        );
    }

    #[test]
    fn arch_from_vendor_class_when_93_missing() {
        let p = profile();
        let d = decide(
            Some(&p),
            true,
            &req(None, Some("PXEClient:Arch:00007:UNDI:003016"), false),
        );
        assert_eq!(d.arch, Some(7));
        assert_eq!(file(&d), Some(("ipxe.efi", Transport::Tftp)));
        let d = decide(
            Some(&p),
            true,
            &req(None, Some("PXEClient:Arch:0x7"), false),
        );
        assert_eq!(d.boot_file, None);
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:00011"), Some(11));
        assert_eq!(arch_from_vendor_class(b"PXEClient"), None);
    }

    #[test]
    fn missing_field_is_reported() {
        let mut p = profile();
        p.bios = None;
        let d = decide(Some(&p), true, &req(Some(0), Some("PXEClient"), false));
        assert_eq!(d.boot_file, None);
        assert_eq!(d.missing, Some("bios"));
    }
}
