//! Raw file contents → validated [`Config`]: every check, each failure an [`Invalid`] naming the
//! key path and what to do. Linear in the number of entries (maps and sets keyed by MAC and IP), so
//! tens of thousands of `[[machine]]` entries validate in milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use ims_proto::MacAddr;
use ipnet::Ipv4Net;
use toml::Spanned;

use crate::ratelimit::RateLimit;

use super::raw::{
    RawBootProfile, RawConfig, RawDhcp, RawDuration, RawInterface, RawLogFormat, RawMachine,
    RawSubnet,
};
use super::{
    BootProfile, Config, DEFAULT_DATA_DIR, DEFAULT_DECLINE_QUARANTINE, DEFAULT_DHCP_RATE_LIMIT,
    DEFAULT_LEASE_TIME, DEFAULT_MAX_BATCH, DEFAULT_METRICS_LISTEN, DEFAULT_OFFER_TIMEOUT,
    DEFAULT_UNKNOWN_LOG_PER_MINUTE, DhcpConfig, DhcpDriverConfig, Interface, Invalid, LogFormat,
    MIN_LEASE_TIME, Machine, Subnet, services,
};

/// Longest kernel interface name (`IFNAMSIZ` − 1).
const MAX_IFNAME: usize = 15;
/// Longest boot file name or URL (DHCP option 67 holds at most 255 bytes).
const MAX_BOOT_FILE: usize = 255;
/// Longest prefix served: a /31 or /32 has no address to lease.
const MAX_PREFIX: u8 = 30;

type Res<T> = Result<T, Invalid>;

fn invalid(
    key: impl Into<String>,
    span: Option<Range<usize>>,
    problem: impl Into<String>,
) -> Invalid {
    Invalid {
        key: key.into(),
        problem: problem.into(),
        span,
    }
}

/// Validate a whole file.
pub(crate) fn validate(raw: RawConfig) -> Res<Config> {
    let data_dir = match raw.data_dir {
        None => PathBuf::from(DEFAULT_DATA_DIR),
        Some(d) if d.trim().is_empty() => {
            return Err(invalid(
                "data_dir",
                None,
                "is empty: give the directory for the lease store, such as \"/var/lib/netbootd\"",
            ));
        }
        Some(d) => PathBuf::from(d),
    };
    let metrics_listen = match raw.metrics_listen.as_deref().map(str::trim) {
        None => DEFAULT_METRICS_LISTEN.parse::<SocketAddr>().ok(),
        Some("" | "off") => None,
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "metrics_listen",
                None,
                format!(
                    "{s:?} is not an address:port such as \"127.0.0.1:9464\" (use \"off\" to \
                     disable the metrics listener)"
                ),
            )
        })?),
    };
    let log_format = match raw.log_format {
        None | Some(RawLogFormat::Text) => LogFormat::Text,
        Some(RawLogFormat::Json) => LogFormat::Json,
    };
    let user = match raw.user {
        None => None,
        Some(u)
            if !u.is_empty()
                && u.len() <= 32
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            Some(u)
        }
        Some(u) => {
            return Err(invalid(
                "user",
                None,
                format!(
                    "{u:?} is not a user name: give the unprivileged user to run as after binding, \
                     such as \"netbootd\" or \"nobody\""
                ),
            ));
        }
    };
    let tuning = dhcp_tuning(raw.dhcp.unwrap_or_default())?;

    let boot_profiles = boot_profiles(&raw.boot_profile)?;
    let subnets = subnets(&raw.subnet, &boot_profiles)?;
    let interfaces = interfaces(&raw.interface, &subnets)?;
    let machines = machines(&raw.machine, &subnets, &interfaces, &boot_profiles)?;
    let tftp = raw.tftp.as_ref().map(services::tftp).transpose()?;
    let http = raw
        .http
        .as_ref()
        .map(|http| services::http(http, tftp.as_ref(), &interfaces))
        .transpose()?;
    let control = raw
        .control
        .as_ref()
        .map(super::control::control)
        .transpose()?;

    Ok(Config {
        data_dir,
        metrics_listen,
        log_format,
        user,
        dhcp: DhcpConfig {
            interfaces,
            subnets,
            boot_profiles,
            machines,
            offer_timeout: tuning.offer_timeout,
            decline_quarantine: tuning.decline_quarantine,
            unknown_log_per_minute: tuning.unknown_log_per_minute,
        },
        dhcp_driver: DhcpDriverConfig {
            max_batch: tuning.max_batch,
            rate_limit_per_mac: tuning.rate_limit,
        },
        tftp,
        http,
        control,
    })
}

struct Tuning {
    offer_timeout: u64,
    decline_quarantine: u64,
    unknown_log_per_minute: u32,
    max_batch: usize,
    rate_limit: RateLimit,
}

fn dhcp_tuning(raw: RawDhcp) -> Res<Tuning> {
    let offer_timeout = match raw.offer_timeout {
        None => DEFAULT_OFFER_TIMEOUT,
        Some(d) => match whole_secs("dhcp.offer_timeout", d)? {
            0 => {
                return Err(invalid(
                    "dhcp.offer_timeout",
                    None,
                    "is 0: an offer must stay reserved for a while, such as \"60s\"",
                ));
            }
            secs => secs,
        },
    };
    let decline_quarantine = match raw.decline_quarantine {
        None => DEFAULT_DECLINE_QUARANTINE,
        Some(d) => whole_secs("dhcp.decline_quarantine", d)?,
    };
    let max_batch = match raw.max_batch {
        None => DEFAULT_MAX_BATCH,
        Some(0) => {
            return Err(invalid(
                "dhcp.max_batch",
                None,
                "is 0: at least one lease must fit in a commit (the default is 1024)",
            ));
        }
        Some(n) => n,
    };
    Ok(Tuning {
        offer_timeout,
        decline_quarantine,
        unknown_log_per_minute: raw
            .unknown_log_per_minute
            .unwrap_or(DEFAULT_UNKNOWN_LOG_PER_MINUTE),
        max_batch,
        rate_limit: rate_limit(
            "dhcp",
            "rate_limit_per_mac",
            raw.rate_limit_per_mac,
            raw.rate_limit_burst,
            DEFAULT_DHCP_RATE_LIMIT,
            None,
        )?,
    })
}

/// `<section>.<rate_key>` and `<section>.rate_limit_burst`: a sustained rate (0 disables the
/// limit) and a burst of at least one.
pub(super) fn rate_limit(
    section: &str,
    rate_key: &str,
    per_second: Option<u32>,
    burst: Option<u32>,
    default: RateLimit,
    span: Option<Range<usize>>,
) -> Res<RateLimit> {
    let per_second = per_second.unwrap_or(default.per_second);
    let burst = burst.unwrap_or(default.burst);
    if per_second > 0 && burst == 0 {
        return Err(invalid(
            format!("{section}.rate_limit_burst"),
            span,
            format!(
                "is 0 while {section}.{rate_key} is {per_second}: allow at least one message at                  once (the default is {}), or set {section}.{rate_key} = 0 to turn the limit off",
                default.burst
            ),
        ));
    }
    Ok(RateLimit { per_second, burst })
}

/// A duration in whole seconds.
fn whole_secs(key: &str, d: RawDuration) -> Res<u64> {
    if d.0.subsec_nanos() != 0 {
        return Err(invalid(
            key,
            None,
            format!(
                "{} is not a whole number of seconds",
                humantime::format_duration(d.0)
            ),
        ));
    }
    Ok(d.0.as_secs())
}

fn boot_profiles(raw: &[Spanned<RawBootProfile>]) -> Res<BTreeMap<String, BootProfile>> {
    let mut out = BTreeMap::new();
    let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, entry) in raw.iter().enumerate() {
        let span = Some(entry.span());
        let p = entry.get_ref();
        let at = format!("boot_profile[{i}]");
        if p.name.trim().is_empty() || p.name.chars().any(char::is_control) {
            return Err(invalid(
                format!("{at}.name"),
                span,
                format!(
                    "{:?} is not a usable name: give a non-empty name such as \"default\"",
                    p.name
                ),
            ));
        }
        let at = format!("boot_profile[{i}] ({})", p.name);
        if let Some(first) = first_index.insert(&p.name, i) {
            return Err(invalid(
                format!("{at}.name"),
                span,
                format!(
                    "{:?} is already the name of boot_profile[{first}]: names must be unique",
                    p.name
                ),
            ));
        }
        let files = [
            ("bios", &p.bios, false),
            ("uefi_x64", &p.uefi_x64, false),
            ("uefi_arm64", &p.uefi_arm64, false),
            ("http", &p.http, true),
            ("http_arm64", &p.http_arm64, true),
            ("ipxe_script", &p.ipxe_script, false),
        ];
        for (key, value, url) in files {
            if let Some(value) = value {
                boot_file(&format!("{at}.{key}"), span.clone(), value, url)?;
            }
        }
        services::boot_script(&at, span.clone(), p)?;
        out.insert(
            p.name.clone(),
            BootProfile {
                name: p.name.clone(),
                bios: p.bios.clone(),
                uefi_x64: p.uefi_x64.clone(),
                uefi_arm64: p.uefi_arm64.clone(),
                http: p.http.clone(),
                http_arm64: p.http_arm64.clone(),
                ipxe_script: p.ipxe_script.clone(),
                kernel: p.kernel.clone(),
                initrd: p.initrd.clone(),
                cmdline: p.cmdline.clone(),
            },
        );
    }
    Ok(out)
}

/// Check one boot profile that did not come from the file (the control plane's snapshot) with
/// the rules of `[[boot_profile]]`; `at` names it in the error (`boot_profile "default"`).
pub(crate) fn check_boot_profile(at: &str, p: &RawBootProfile) -> Result<(), Invalid> {
    if p.name.trim().is_empty() || p.name.chars().any(char::is_control) {
        return Err(invalid(
            format!("{at}.name"),
            None,
            format!("{:?} is not a usable name", p.name),
        ));
    }
    let files = [
        ("bios", &p.bios, false),
        ("uefi_x64", &p.uefi_x64, false),
        ("uefi_arm64", &p.uefi_arm64, false),
        ("http", &p.http, true),
        ("http_arm64", &p.http_arm64, true),
        ("ipxe_script", &p.ipxe_script, false),
    ];
    for (key, value, url) in files {
        if let Some(value) = value {
            boot_file(&format!("{at}.{key}"), None, value, url)?;
        }
    }
    services::boot_script(at, None, p)
}

/// A boot file name or URL: non-empty, printable, at most 255 bytes; HTTP boot needs a URL.
fn boot_file(key: &str, span: Option<Range<usize>>, value: &str, url: bool) -> Res<()> {
    if value.is_empty() {
        return Err(invalid(
            key,
            span,
            "is empty: give a file name or remove the key",
        ));
    }
    if value.len() > MAX_BOOT_FILE {
        return Err(invalid(
            key,
            span,
            format!(
                "is {} bytes long: DHCP carries at most {MAX_BOOT_FILE}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            key,
            span,
            format!("{value:?} contains control characters"),
        ));
    }
    if url && !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(invalid(
            key,
            span,
            format!("{value:?} is not a URL: UEFI HTTP boot needs http:// or https://"),
        ));
    }
    Ok(())
}

fn subnets(
    raw: &[Spanned<RawSubnet>],
    profiles: &BTreeMap<String, BootProfile>,
) -> Res<Vec<Subnet>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        out.push(subnet(i, entry, profiles)?);
    }
    // Two CIDR blocks overlap only if one contains the other; sorted by network address, any
    // overlap shows up between neighbours.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by_key(|&i| (out[i].cidr.network(), out[i].cidr.prefix_len()));
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if out[a].cidr.contains(&out[b].cidr.network()) {
            let (first, second) = (a.min(b), a.max(b));
            return Err(invalid(
                format!("subnet[{second}].cidr"),
                Some(raw[second].span()),
                format!(
                    "{} overlaps subnet[{first}] ({}): subnets must not overlap",
                    out[second].cidr, out[first].cidr
                ),
            ));
        }
    }
    Ok(out)
}

fn subnet(
    i: usize,
    entry: &Spanned<RawSubnet>,
    profiles: &BTreeMap<String, BootProfile>,
) -> Res<Subnet> {
    let span = Some(entry.span());
    let s = entry.get_ref();
    let cidr: Ipv4Net = s.cidr.trim().parse().map_err(|_| {
        invalid(
            format!("subnet[{i}].cidr"),
            span.clone(),
            format!(
                "{:?} is not an IPv4 network such as \"10.77.0.0/24\"",
                s.cidr
            ),
        )
    })?;
    if cidr.trunc() != cidr {
        return Err(invalid(
            format!("subnet[{i}].cidr"),
            span,
            format!("{cidr} has host bits set: did you mean {}?", cidr.trunc()),
        ));
    }
    if cidr.prefix_len() > MAX_PREFIX {
        return Err(invalid(
            format!("subnet[{i}].cidr"),
            span,
            format!(
                "{cidr} is too small to lease addresses from: use a prefix of /{MAX_PREFIX} or shorter"
            ),
        ));
    }
    let at = format!("subnet[{i}] ({cidr})");
    let host = |key: &str, ip: Ipv4Addr| -> Res<()> {
        if !cidr.contains(&ip) {
            return Err(invalid(
                format!("{at}.{key}"),
                span.clone(),
                format!("{ip} is outside {cidr}"),
            ));
        }
        if ip == cidr.network() || ip == cidr.broadcast() {
            return Err(invalid(
                format!("{at}.{key}"),
                span.clone(),
                format!("{ip} is the network or broadcast address of {cidr}, not a host"),
            ));
        }
        Ok(())
    };
    if let Some(router) = s.router {
        host("router", router)?;
    }
    let range = match s.range {
        None => None,
        Some([start, end]) => {
            for ip in [start, end] {
                if !cidr.contains(&ip) {
                    return Err(invalid(
                        format!("{at}.range"),
                        span,
                        format!("{ip} is outside {cidr}: the range must lie inside its subnet"),
                    ));
                }
            }
            if start > end {
                return Err(invalid(
                    format!("{at}.range"),
                    span,
                    format!("starts at {start}, after its end {end}: write [first, last]"),
                ));
            }
            Some((start, end))
        }
    };
    let mut exclude = Vec::with_capacity(s.exclude.len());
    for (j, text) in s.exclude.iter().enumerate() {
        let key = format!("{at}.exclude[{j}]");
        let (a, b) = parse_ip_range(text).ok_or_else(|| {
            invalid(
                &key,
                span.clone(),
                format!(
                    "{text:?} is not an address or a range such as \"10.77.0.160-10.77.0.170\""
                ),
            )
        })?;
        if a > b {
            return Err(invalid(
                key,
                span,
                format!("starts at {a}, after its end {b}"),
            ));
        }
        if !cidr.contains(&a) || !cidr.contains(&b) {
            return Err(invalid(key, span, format!("{text} is outside {cidr}")));
        }
        exclude.push((a, b));
    }
    let lease_time = match s.lease_time {
        None => DEFAULT_LEASE_TIME,
        Some(d) => {
            let secs = whole_secs(&format!("{at}.lease_time"), d)?;
            if secs < u64::from(MIN_LEASE_TIME) {
                return Err(invalid(
                    format!("{at}.lease_time"),
                    span,
                    format!("{secs} s is shorter than the minimum of {MIN_LEASE_TIME} s"),
                ));
            }
            // 0xFFFF_FFFF means "infinite" on the wire; refuse it and anything longer.
            u32::try_from(secs)
                .ok()
                .filter(|&t| t != u32::MAX)
                .ok_or_else(|| {
                    invalid(
                        format!("{at}.lease_time"),
                        span.clone(),
                        format!(
                            "{secs} s is too long: at most {} s (about 136 years)",
                            u32::MAX - 1
                        ),
                    )
                })?
        }
    };
    if let Some(domain) = &s.domain {
        if !is_valid_hostname(domain) {
            return Err(invalid(
                format!("{at}.domain"),
                span,
                format!(
                    "{domain:?} is not a valid domain name: dot-separated labels of letters, \
                     digits and hyphens"
                ),
            ));
        }
    }
    if let Some(name) = &s.boot_profile {
        profile_exists(&format!("{at}.boot_profile"), span.clone(), name, profiles)?;
    }
    if let Some(next) = s.next_server {
        if next.is_unspecified() || next.is_broadcast() || next.is_multicast() {
            return Err(invalid(
                format!("{at}.next_server"),
                span,
                format!("{next} is not a unicast address"),
            ));
        }
    }
    Ok(Subnet {
        cidr,
        router: s.router,
        dns: s.dns.clone(),
        domain: s.domain.clone(),
        lease_time,
        range,
        exclude,
        allow_unknown: s.allow_unknown,
        boot_profile: s.boot_profile.clone(),
        next_server: s.next_server,
    })
}

/// `"a.b.c.d"` or `"a.b.c.d-e.f.g.h"` (spaces around the dash allowed).
fn parse_ip_range(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match s.split_once('-') {
        None => {
            let ip = s.trim().parse().ok()?;
            Some((ip, ip))
        }
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
    }
}

fn profile_exists(
    key: &str,
    span: Option<Range<usize>>,
    name: &str,
    profiles: &BTreeMap<String, BootProfile>,
) -> Res<()> {
    if profiles.contains_key(name) {
        return Ok(());
    }
    let known = if profiles.is_empty() {
        "none is defined".to_owned()
    } else {
        let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
        format!("defined: {}", names.join(", "))
    };
    Err(invalid(
        key,
        span,
        format!("{name:?} names no [[boot_profile]] ({known}): add it or fix the name"),
    ))
}

fn interfaces(raw: &[Spanned<RawInterface>], subnets: &[Subnet]) -> Res<Vec<Interface>> {
    let mut out: Vec<Interface> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let span = Some(entry.span());
        let iface = entry.get_ref();
        let name = &iface.name;
        let valid = !name.is_empty()
            && name.len() <= MAX_IFNAME
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !valid {
            return Err(invalid(
                format!("interface[{i}].name"),
                span,
                format!(
                    "{name:?} is not a Linux interface name: 1 to {MAX_IFNAME} characters, \
                     without '/', ':' or spaces (see `ip link`)"
                ),
            ));
        }
        let at = format!("interface[{i}] ({name})");
        if let Some(first) = out.iter().position(|o| &o.name == name) {
            return Err(invalid(
                format!("{at}.name"),
                span,
                format!("{name} is already interface[{first}]: list each interface once"),
            ));
        }
        let address = iface.address;
        match subnets.iter().find(|s| s.cidr.contains(&address)) {
            None => {
                return Err(invalid(
                    format!("{at}.address"),
                    span,
                    format!(
                        "{address} is outside every [[subnet]]: add a subnet containing it or \
                         fix the address"
                    ),
                ));
            }
            Some(s) if address == s.cidr.network() || address == s.cidr.broadcast() => {
                return Err(invalid(
                    format!("{at}.address"),
                    span,
                    format!(
                        "{address} is the network or broadcast address of {}",
                        s.cidr
                    ),
                ));
            }
            Some(_) => {}
        }
        out.push(Interface {
            name: name.clone(),
            address,
        });
    }
    Ok(out)
}

fn machines(
    raw: &[Spanned<RawMachine>],
    subnets: &[Subnet],
    interfaces: &[Interface],
    profiles: &BTreeMap<String, BootProfile>,
) -> Res<BTreeMap<MacAddr, Machine>> {
    let mut out = BTreeMap::new();
    let mut first_by_mac: BTreeMap<MacAddr, usize> = BTreeMap::new();
    let mut first_by_ip: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let own: BTreeSet<Ipv4Addr> = interfaces.iter().map(|i| i.address).collect();
    let any_range = subnets.iter().any(|s| s.range.is_some());
    for (i, entry) in raw.iter().enumerate() {
        let span = Some(entry.span());
        let m = entry.get_ref();
        let mac: MacAddr = m
            .mac
            .parse()
            .map_err(|e| invalid(format!("machine[{i}].mac"), span.clone(), format!("{e}")))?;
        let at = format!("machine[{i}] ({mac})");
        if mac.is_multicast() || mac.octets() == [0; 6] {
            return Err(invalid(
                format!("{at}.mac"),
                span,
                "is a multicast, broadcast or all-zero address, never a machine's: fix the MAC",
            ));
        }
        if let Some(first) = first_by_mac.insert(mac, i) {
            return Err(invalid(
                format!("{at}.mac"),
                span,
                format!("{mac} is already machine[{first}]: register each MAC once"),
            ));
        }
        if let Some(ip) = m.ip {
            let Some(subnet) = subnets.iter().find(|s| s.cidr.contains(&ip)) else {
                return Err(invalid(
                    format!("{at}.ip"),
                    span,
                    format!(
                        "{ip} is outside every [[subnet]]: add a subnet containing it or fix the \
                         address"
                    ),
                ));
            };
            if ip == subnet.cidr.network() || ip == subnet.cidr.broadcast() {
                return Err(invalid(
                    format!("{at}.ip"),
                    span,
                    format!(
                        "{ip} is the network or broadcast address of {}",
                        subnet.cidr
                    ),
                ));
            }
            if own.contains(&ip) {
                return Err(invalid(
                    format!("{at}.ip"),
                    span,
                    format!("{ip} is this server's [[interface]] address: pick another address"),
                ));
            }
            if subnet.router == Some(ip) {
                return Err(invalid(
                    format!("{at}.ip"),
                    span,
                    format!(
                        "{ip} is the router of {}: pick another address",
                        subnet.cidr
                    ),
                ));
            }
            if let Some(first) = first_by_ip.insert(ip, i) {
                return Err(invalid(
                    format!("{at}.ip"),
                    span,
                    format!(
                        "{ip} is already reserved for machine[{first}]: addresses must be unique"
                    ),
                ));
            }
        } else if !any_range {
            return Err(invalid(
                format!("{at}.ip"),
                span,
                "is not set, and no [[subnet]] has a range to take an address from: give the \
                 machine an ip or add a range to its subnet",
            ));
        }
        if !is_valid_hostname(&m.hostname) {
            return Err(invalid(
                format!("{at}.hostname"),
                span,
                format!(
                    "{:?} is not a valid hostname: labels of 1 to 63 letters, digits and \
                     hyphens (not starting or ending with a hyphen), at most 253 characters",
                    m.hostname
                ),
            ));
        }
        if let Some(name) = &m.boot_profile {
            profile_exists(&format!("{at}.boot_profile"), span.clone(), name, profiles)?;
        }
        out.insert(
            mac,
            Machine {
                mac,
                ip: m.ip,
                hostname: m.hostname.clone(),
                boot_profile: m.boot_profile.clone(),
                netboot: m.netboot.unwrap_or(true),
            },
        );
    }
    Ok(out)
}

/// Whether `name` is a valid RFC 1123 host (or domain) name: dot-separated labels of 1–63 ASCII
/// letters, digits and hyphens, not starting or ending with a hyphen, at most 253 characters in
/// all. A single trailing dot (fully qualified form) is not accepted.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
