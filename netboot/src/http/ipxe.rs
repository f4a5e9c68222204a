//! Per-machine iPXE scripts (`GET /boot.ipxe?mac=M`, `GET /boot.ipxe/{M}`).
//!
//! For a registered machine with `netboot = true` whose boot profile has a `kernel`:
//!
//! ```text
//! #!ipxe
//! kernel <kernel URL> <cmdline>
//! initrd <initrd URL>
//! boot
//! ```
//!
//! The profile is the machine's `boot_profile`, else that of the subnet holding its reserved
//! address (or the requesting address), else the profile called `default`, as the DHCP server
//! chooses. Kernel and initrd given as paths under the root become `<public_url>/<path>`
//! (percent-encoded); URLs are kept. In the command line `{hostname}`, `{ip}` (the reserved
//! address, else the address the script was requested from), `{mac}` (lower-case,
//! colon-separated) and `{phone_home}` (`<public_url>/phone-home/<mac>`) are substituted.
//!
//! Anything else (unknown MAC, netboot off, missing profile or kernel) gets a script that prints
//! the reason and runs `exit`, so the firmware falls through to its next boot device. Both are
//! `200 text/plain`.
//!
//! iPXE has no quoting: it splits a line at whitespace, treats the tokens `||`, `&&`, `;` and any
//! token starting with `#` as command separators or comments, and expands `${…}` settings in
//! every token. The rendered lines are checked so that a profile (from the file or, later,
//! pushed by the control plane) can never inject a command or an expansion: such tokens, `${`
//! and control characters anywhere, and whitespace in a URL or a substituted value, are refused
//! and the exit script names the problem. (The configuration already refuses any `{…}` in
//! `cmdline` other than the four placeholders.) The reason printed by an exit script is reduced
//! to safe characters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use ims_proto::MacAddr;

use super::{App, percent_decode, record, text};
use crate::config::{BootProfile, DhcpConfig, Machine, Subnet};
use crate::store::events::EventKind;

/// The machines and boot profiles the HTTP server answers for; replaceable at runtime with
/// [`super::HttpState::set_catalog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootCatalog {
    /// Registered machines by MAC.
    pub machines: BTreeMap<MacAddr, Machine>,
    /// Boot profiles by name.
    pub boot_profiles: BTreeMap<String, BootProfile>,
    /// Subnets, for the profile of machines that name none.
    pub subnets: Vec<Subnet>,
}

impl From<&DhcpConfig> for BootCatalog {
    fn from(dhcp: &DhcpConfig) -> Self {
        Self {
            machines: dhcp.machines.clone(),
            boot_profiles: dhcp.boot_profiles.clone(),
            subnets: dhcp.subnets.clone(),
        }
    }
}

/// A rendered script and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The script text.
    pub text: String,
    /// The MAC is a registered machine.
    pub registered: bool,
    /// The boot profile used, when one was found.
    pub profile: Option<String>,
    /// Why the script only exits; `None` when it boots.
    pub refused: Option<String>,
}

/// Render the script for `mac`, requested from `client` (pure). `public_url` has no trailing
/// `/`. See the module docs.
pub fn render(
    catalog: &BootCatalog,
    public_url: &str,
    mac: MacAddr,
    client: Option<Ipv4Addr>,
) -> Script {
    let exit = |registered: bool, profile: Option<String>, reason: String| Script {
        text: exit_script(&reason),
        registered,
        profile,
        refused: Some(reason),
    };
    let Some(machine) = catalog.machines.get(&mac) else {
        return exit(
            false,
            None,
            format!("{} is not a registered machine", mac_lower(mac)),
        );
    };
    if !machine.netboot {
        return exit(
            true,
            None,
            format!(
                "netboot is off for {} ({}): booting from the next device",
                machine.hostname,
                mac_lower(mac)
            ),
        );
    }
    let ip = machine.ip.or(client);
    let subnet_profile = ip.and_then(|ip| {
        catalog
            .subnets
            .iter()
            .find(|s| s.cidr.contains(&ip))
            .and_then(|s| s.boot_profile.as_deref())
    });
    let name = machine
        .boot_profile
        .as_deref()
        .or(subnet_profile)
        .unwrap_or("default");
    let Some(profile) = catalog.boot_profiles.get(name) else {
        return exit(true, None, format!("boot profile {name} is not defined"));
    };
    let profile_name = Some(profile.name.clone());
    match boot_script(profile, public_url, machine, ip) {
        Ok(text) => Script {
            text,
            registered: true,
            profile: profile_name,
            refused: None,
        },
        Err(reason) => exit(true, profile_name, reason),
    }
}

/// The boot script, or why it cannot be written safely.
fn boot_script(
    profile: &BootProfile,
    public_url: &str,
    machine: &Machine,
    ip: Option<Ipv4Addr>,
) -> Result<String, String> {
    let name = &profile.name;
    let Some(kernel) = profile.kernel.as_deref() else {
        return Err(format!("boot profile {name} has no kernel"));
    };
    let kernel = url_for(public_url, kernel).map_err(|e| format!("profile {name} kernel {e}"))?;
    let initrd = profile
        .initrd
        .as_deref()
        .map(|i| url_for(public_url, i))
        .transpose()
        .map_err(|e| format!("profile {name} initrd {e}"))?;
    let mac = mac_lower(machine.mac);
    let phone_home = format!("{public_url}/phone-home/{mac}");
    let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
    let values = [
        ("{hostname}", machine.hostname.as_str()),
        ("{ip}", ip.as_str()),
        ("{mac}", mac.as_str()),
        ("{phone_home}", phone_home.as_str()),
    ];
    for (key, value) in values {
        if !safe_value(value) {
            return Err(format!("value of {key} is not safe in an iPXE script"));
        }
    }
    let mut cmdline = profile.cmdline.clone().unwrap_or_default();
    for (key, value) in values {
        cmdline = cmdline.replace(key, value);
    }
    if cmdline.chars().any(char::is_control) {
        return Err(format!(
            "boot profile {name} cmdline has a control character"
        ));
    }
    if cmdline.contains("${") {
        return Err(format!(
            "boot profile {name} cmdline has a ${{...}} that iPXE would expand"
        ));
    }
    if let Some(token) = cmdline.split_whitespace().find(|t| is_separator(t)) {
        return Err(format!(
            "boot profile {name} cmdline has the token {} that iPXE reads as a command \
             separator or comment",
            sanitize(token)
        ));
    }
    let mut text = String::from("#!ipxe\n");
    let _ = write!(text, "kernel {kernel}");
    for token in cmdline.split_whitespace() {
        let _ = write!(text, " {token}");
    }
    text.push('\n');
    if let Some(initrd) = initrd {
        let _ = writeln!(text, "initrd {initrd}");
    }
    text.push_str("boot\n");
    Ok(text)
}

/// A script that prints `reason` and exits, so the firmware tries its next boot device.
fn exit_script(reason: &str) -> String {
    format!("#!ipxe\necho netbootd: {}\nexit\n", sanitize(reason))
}

/// `reason` with every character iPXE could interpret replaced by `_`.
fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .,:/_-()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Tokens iPXE treats as command separators or comments.
fn is_separator(token: &str) -> bool {
    matches!(token, "||" | "&&" | ";") || token.starts_with('#')
}

/// A substituted value or URL: one token, no settings expansion, no control characters.
fn safe_value(value: &str) -> bool {
    !value.contains("${")
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && !is_separator(value)
}

/// A boot profile's `kernel`/`initrd`: kept when it is a URL, else a path under the root made
/// absolute with `public_url` (percent-encoding what a URL path cannot hold).
fn url_for(public_url: &str, value: &str) -> Result<String, String> {
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        let mut url = format!("{public_url}/");
        for b in value.trim_start_matches('/').bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
                url.push(char::from(b));
            } else {
                let _ = write!(url, "%{b:02X}");
            }
        }
        url
    };
    if safe_value(&url) {
        Ok(url)
    } else {
        Err(format!(
            "{} is not usable in an iPXE script (whitespace, control character or ${{)",
            sanitize(value)
        ))
    }
}

/// `52:54:00:ab:cd:ef`, as iPXE's `${net0/mac}` expands.
pub fn mac_lower(mac: MacAddr) -> String {
    mac.to_string().to_ascii_lowercase()
}

/// `GET /boot.ipxe?mac=M` or `GET /boot.ipxe/{M}`.
pub(super) fn handle(app: &App, peer: SocketAddr, req: &Request) -> Response {
    let uri = req.uri();
    let raw = match uri.path().strip_prefix("/boot.ipxe/") {
        Some(segment) => Some(segment.to_owned()),
        None => uri.query().and_then(query_mac),
    };
    let Some(raw) = raw else {
        return text(
            StatusCode::BAD_REQUEST,
            "which machine? use /boot.ipxe?mac=${net0/mac} or /boot.ipxe/${net0/mac}\n",
        );
    };
    let parsed = percent_decode(&raw)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<MacAddr>().ok());
    let Some(mac) = parsed else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{} is not a MAC address\n", sanitize(&raw)),
        );
    };
    let client = match peer.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let script = render(&app.state.catalog(), &app.state.public_url, mac, client);
    if script.registered {
        match &script.refused {
            None => tracing::info!(%mac, %peer, profile = script.profile, "iPXE script: boot"),
            Some(reason) => tracing::info!(%mac, %peer, reason, "iPXE script: exit"),
        }
        record(
            app,
            EventKind::IpxeScript {
                mac,
                peer,
                profile: script.profile.clone(),
                refused: script.refused.clone(),
            },
        );
    } else {
        tracing::debug!(%mac, %peer, "iPXE script requested for an unregistered MAC");
    }
    let mut response = text(StatusCode::OK, script.text);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The raw (still percent-encoded) `mac` parameter of a query string.
fn query_mac(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "mac")
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv4Net;

    use super::*;

    const URL: &str = "http://10.0.0.1:8080";

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0xab, 0xcd, last])
    }

    fn catalog() -> BootCatalog {
        let mut c = BootCatalog::default();
        let machine = |last: u8, ip: Option<Ipv4Addr>, profile: Option<&str>, netboot: bool| {
            (
                mac(last),
                Machine {
                    mac: mac(last),
                    ip,
                    hostname: format!("node{last}"),
                    boot_profile: profile.map(str::to_owned),
                    netboot,
                },
            )
        };
        c.machines.extend([
            machine(1, Some(Ipv4Addr::new(10, 0, 0, 21)), Some("linux"), true),
            machine(2, None, None, true),
            machine(3, None, Some("linux"), false),
            machine(4, None, Some("bare"), true),
            machine(5, None, Some("nope"), true),
            machine(6, None, Some("evil"), true),
        ]);
        let profile = |name: &str, kernel: Option<&str>, cmdline: Option<&str>| BootProfile {
            name: name.to_owned(),
            kernel: kernel.map(str::to_owned),
            initrd: kernel.map(|_| "images/initrd img".to_owned()),
            cmdline: cmdline.map(str::to_owned),
            ..BootProfile::default()
        };
        for p in [
            profile(
                "linux",
                Some("/images/vmlinuz"),
                Some("console=ttyS0 hostname={hostname} ip={ip} mac={mac} cb={phone_home}"),
            ),
            profile("subnet", Some("https://mirror.example/k"), Some("quiet")),
            profile("bare", None, None),
            profile("evil", Some("k"), Some("x || shell")),
        ] {
            c.boot_profiles.insert(p.name.clone(), p);
        }
        c.subnets.push(Subnet {
            cidr: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).expect("net"),
            router: None,
            dns: Vec::new(),
            domain: None,
            lease_time: 3600,
            range: None,
            exclude: Vec::new(),
            allow_unknown: false,
            boot_profile: Some("subnet".to_owned()),
            next_server: None,
        });
        c
    }

    #[test]
    fn boot_script_for_a_registered_machine() {
        let s = render(&catalog(), URL, mac(1), Some(Ipv4Addr::new(10, 0, 0, 99)));
        assert_eq!(
            s.text,
            "#!ipxe\n\
             kernel http://10.0.0.1:8080/images/vmlinuz console=ttyS0 hostname=node1 \
             ip=10.0.0.21 mac=52:54:00:ab:cd:01 cb=http://10.0.0.1:8080/phone-home/52:54:00:ab:cd:01\n\
             initrd http://10.0.0.1:8080/images/initrd%20img\n\
             boot\n"
        );
        assert_eq!(s.profile.as_deref(), Some("linux"));
        assert!(s.registered && s.refused.is_none());
    }

    #[test]
    fn subnet_profile_and_client_address_fill_in() {
        let s = render(&catalog(), URL, mac(2), Some(Ipv4Addr::new(10, 0, 0, 99)));
        assert_eq!(
            s.text,
            "#!ipxe\nkernel https://mirror.example/k quiet\ninitrd http://10.0.0.1:8080/images/initrd%20img\nboot\n"
        );
        // Outside every subnet: the "default" profile, which does not exist.
        let s = render(&catalog(), URL, mac(2), Some(Ipv4Addr::new(192, 168, 0, 1)));
        assert!(s.text.ends_with("\nexit\n"), "{}", s.text);
        assert!(s.refused.as_deref().is_some_and(|r| r.contains("default")));
    }

    #[test]
    fn exit_scripts_say_why() {
        let c = catalog();
        let cases = [
            (mac(9), "is not a registered machine", false),
            (mac(3), "netboot is off", true),
            (mac(4), "has no kernel", true),
            (mac(5), "boot profile nope is not defined", true),
            (mac(6), "command separator", true),
        ];
        for (m, why, registered) in cases {
            let s = render(&c, URL, m, None);
            assert!(s.text.starts_with("#!ipxe\necho netbootd: "), "{}", s.text);
            assert!(s.text.ends_with("\nexit\n"), "{}", s.text);
            assert!(!s.text.contains("kernel "), "{}", s.text);
            assert!(s.text.contains(why), "{m}: {}", s.text);
            assert_eq!(s.registered, registered);
            assert_eq!(s.text.lines().count(), 3, "{}", s.text);
        }
    }

    #[test]
    fn substituted_values_and_urls_cannot_inject() {
        let mut c = catalog();
        if let Some(m) = c.machines.get_mut(&mac(1)) {
            m.hostname = "a ${root} b".to_owned();
        }
        let s = render(&c, URL, mac(1), None);
        assert!(
            s.refused.is_some() && s.text.ends_with("\nexit\n"),
            "{}",
            s.text
        );
        assert!(!s.text.contains("${"), "{}", s.text);

        let mut c = catalog();
        if let Some(p) = c.boot_profiles.get_mut("linux") {
            p.kernel = Some("http://x/k\nshell".to_owned());
        }
        let s = render(&c, URL, mac(1), None);
        assert!(s.refused.is_some(), "{}", s.text);
        assert_eq!(s.text.lines().count(), 3, "{}", s.text);

        // Paths are percent-encoded, so `${`, `#` and spaces cannot appear in a URL.
        assert_eq!(
            url_for(URL, "a dir/${x}#y").as_deref(),
            Ok("http://10.0.0.1:8080/a%20dir/$%7Bx%7D%23y")
        );
        for cmdline in [
            "a # b",
            "a ; b",
            "a && b",
            "a\tb",
            "a\u{7}",
            "ip=${net0/ip}",
        ] {
            let mut c = catalog();
            if let Some(p) = c.boot_profiles.get_mut("linux") {
                p.cmdline = Some(cmdline.to_owned());
            }
            let s = render(&c, URL, mac(1), None);
            assert!(s.refused.is_some(), "{cmdline:?}: {}", s.text);
        }
        // Repeated spaces are fine: tokens are re-joined with single spaces.
        let mut c = catalog();
        if let Some(p) = c.boot_profiles.get_mut("linux") {
            p.cmdline = Some("a  b   c ".to_owned());
        }
        let s = render(&c, URL, mac(1), None);
        assert!(s.text.contains("/images/vmlinuz a b c\n"), "{}", s.text);
    }

    #[test]
    fn query_parameter() {
        assert_eq!(query_mac("a=1&mac=52%3A54&b").as_deref(), Some("52%3A54"));
        assert_eq!(query_mac("mac="), Some(String::new()));
        assert_eq!(query_mac("x=1"), None);
        assert_eq!(mac_lower(mac(0xef)), "52:54:00:ab:cd:ef");
    }
}
