//! What the edge serves when it holds a snapshot from the control plane: the configuration
//! file's settings with the snapshot's machines, boot profiles and (when it has any) subnets.
//!
//! # Precedence
//!
//! * **Machines and boot profiles**: the snapshot's replace the file's entirely (the control
//!   plane is the source of truth for what is registered; a machine deleted centrally stops
//!   being served).
//! * **Subnets**: the snapshot's replace the file's when the snapshot lists at least one;
//!   otherwise the file's stay. Keys only the file has (`exclude`, `allow_unknown`) are kept
//!   for a snapshot subnet with the same network.
//! * **Interfaces, timers, driver tuning**: always the file's (they describe this host).
//!
//! Entries are checked with the file's rules. The control plane validates what it stores, so a
//! bad entry is unexpected; it is left out with a warning rather than refusing the whole
//! snapshot, so one bad row cannot stop a site from being served. A machine or subnet naming a
//! boot profile that does not exist keeps the name (the DHCP server then hands out no boot
//! file and warns), as a subnet does in a running server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ims_proto::{BootProfileEntry, MachineEntry, Snapshot, SubnetEntry};
use ipnet::Ipv4Net;

use crate::config::raw::RawBootProfile;
use crate::config::{
    BootProfile, DhcpConfig, MIN_LEASE_TIME, Machine, Subnet, check_boot_profile, is_valid_hostname,
};

/// Longest prefix served (a /31 or /32 has no address to lease), as in the file.
const MAX_PREFIX: u8 = 30;

/// The configuration to serve, and what was left out of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// `base` with the snapshot's entries.
    pub dhcp: DhcpConfig,
    /// One line per entry left out or oddity found, for the log.
    pub warnings: Vec<String>,
}

/// `base` (from the file) with `snapshot`'s machines, boot profiles and subnets, as described
/// in the module docs.
pub fn effective_dhcp(base: &DhcpConfig, snapshot: &Snapshot) -> Effective {
    let mut warnings = Vec::new();
    let boot_profiles = profiles(&snapshot.boot_profiles, &mut warnings);
    let subnets = if snapshot.subnets.is_empty() {
        base.subnets.clone()
    } else {
        subnets(&snapshot.subnets, &base.subnets, &mut warnings)
    };
    for subnet in &subnets {
        if let Some(name) = &subnet.boot_profile {
            if !boot_profiles.contains_key(name) {
                warnings.push(format!(
                    "subnet {} names boot profile {name:?}, which the snapshot does not define",
                    subnet.cidr
                ));
            }
        }
    }
    for interface in &base.interfaces {
        if !subnets.iter().any(|s| s.cidr.contains(&interface.address)) {
            warnings.push(format!(
                "interface {} ({}) is in none of the snapshot's subnets: its clients get no \
                 answer",
                interface.name, interface.address
            ));
        }
    }
    let own: BTreeSet<Ipv4Addr> = base.interfaces.iter().map(|i| i.address).collect();
    let machines = machines(
        &snapshot.machines,
        &subnets,
        &own,
        &boot_profiles,
        &mut warnings,
    );
    Effective {
        dhcp: DhcpConfig {
            interfaces: base.interfaces.clone(),
            subnets,
            boot_profiles,
            machines,
            ..base.clone()
        },
        warnings,
    }
}

fn profiles(
    entries: &[BootProfileEntry],
    warnings: &mut Vec<String>,
) -> BTreeMap<String, BootProfile> {
    let mut out = BTreeMap::new();
    for p in entries {
        let raw = RawBootProfile {
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
        };
        let at = format!("boot profile {:?}", p.name);
        let mut raw = raw;
        if let Err(e) = check_boot_profile(&at, &raw) {
            // Keep the PXE boot files when only the iPXE script part is unusable.
            let files_only = RawBootProfile {
                kernel: None,
                initrd: None,
                cmdline: None,
                ..raw.clone()
            };
            if check_boot_profile(&at, &files_only).is_ok() {
                warnings.push(format!(
                    "{} {}: serving the profile without kernel, initrd and cmdline",
                    e.key, e.problem
                ));
                raw = files_only;
            } else {
                warnings.push(format!("left out: {} {}", e.key, e.problem));
                continue;
            }
        }
        out.insert(
            p.name.clone(),
            BootProfile {
                name: raw.name,
                bios: raw.bios,
                uefi_x64: raw.uefi_x64,
                uefi_arm64: raw.uefi_arm64,
                http: raw.http,
                http_arm64: raw.http_arm64,
                ipxe_script: raw.ipxe_script,
                kernel: raw.kernel,
                initrd: raw.initrd,
                cmdline: raw.cmdline,
            },
        );
    }
    out
}

fn subnets(entries: &[SubnetEntry], file: &[Subnet], warnings: &mut Vec<String>) -> Vec<Subnet> {
    let mut out: Vec<Subnet> = Vec::with_capacity(entries.len());
    for entry in entries {
        match subnet(entry, file) {
            Err(problem) => warnings.push(format!("left out: subnet {}: {problem}", entry.cidr)),
            Ok(s) => {
                if let Some(other) = out.iter().find(|o| {
                    o.cidr.contains(&s.cidr.network()) || s.cidr.contains(&o.cidr.network())
                }) {
                    warnings.push(format!(
                        "left out: subnet {} overlaps subnet {}",
                        s.cidr, other.cidr
                    ));
                    continue;
                }
                out.push(s);
            }
        }
    }
    out
}

fn subnet(entry: &SubnetEntry, file: &[Subnet]) -> Result<Subnet, String> {
    let cidr = Ipv4Net::new(entry.cidr.addr(), entry.cidr.prefix_len())
        .map_err(|e| format!("not a network: {e}"))?;
    if cidr.prefix_len() > MAX_PREFIX {
        return Err(format!("a /{} has no address to lease", cidr.prefix_len()));
    }
    let host = |what: &str, ip: Ipv4Addr| -> Result<(), String> {
        if !cidr.contains(&ip) || ip == cidr.network() || ip == cidr.broadcast() {
            return Err(format!("{what} {ip} is not a host of {cidr}"));
        }
        Ok(())
    };
    if let Some(gateway) = entry.gateway {
        host("gateway", gateway)?;
    }
    let range = match (entry.range_start, entry.range_end) {
        (Some(start), Some(end)) => {
            host("range start", start)?;
            host("range end", end)?;
            if start > end {
                return Err(format!("range starts at {start}, after its end {end}"));
            }
            Some((start, end))
        }
        (None, None) => None,
        _ => return Err("a range needs both a start and an end".to_owned()),
    };
    if entry.lease_time_s < MIN_LEASE_TIME || entry.lease_time_s == u32::MAX {
        return Err(format!(
            "lease time {} s is outside {MIN_LEASE_TIME}–{} s",
            entry.lease_time_s,
            u32::MAX - 1
        ));
    }
    if let Some(domain) = &entry.domain {
        if !is_valid_hostname(domain) {
            return Err(format!("{domain:?} is not a valid domain name"));
        }
    }
    if let Some(next) = entry.next_server {
        if next.is_unspecified() || next.is_broadcast() || next.is_multicast() {
            return Err(format!("next server {next} is not a unicast address"));
        }
    }
    let local = file.iter().find(|s| s.cidr == cidr);
    Ok(Subnet {
        cidr,
        router: entry.gateway,
        dns: entry.dns.clone(),
        domain: entry.domain.clone(),
        lease_time: entry.lease_time_s,
        range,
        exclude: local.map(|s| s.exclude.clone()).unwrap_or_default(),
        allow_unknown: local.is_some_and(|s| s.allow_unknown),
        boot_profile: entry.boot_profile.clone(),
        next_server: entry.next_server,
    })
}

fn machines(
    entries: &[MachineEntry],
    subnets: &[Subnet],
    own: &BTreeSet<Ipv4Addr>,
    profiles: &BTreeMap<String, BootProfile>,
    warnings: &mut Vec<String>,
) -> BTreeMap<ims_proto::MacAddr, Machine> {
    let mut out = BTreeMap::new();
    let mut by_ip: BTreeMap<Ipv4Addr, ims_proto::MacAddr> = BTreeMap::new();
    let any_range = subnets.iter().any(|s| s.range.is_some());
    for m in entries {
        let at = format!("machine {} ({})", m.mac, m.hostname);
        let problem = if m.mac.is_multicast() || m.mac.octets() == [0; 6] {
            Some("is not a unicast MAC".to_owned())
        } else if !is_valid_hostname(&m.hostname) {
            Some(format!(
                "hostname {:?} is not a valid host name",
                m.hostname
            ))
        } else if out.contains_key(&m.mac) {
            Some("is listed twice".to_owned())
        } else {
            match m.ip {
                Some(ip) => match subnets.iter().find(|s| s.cidr.contains(&ip)) {
                    None => Some(format!("address {ip} is in no served subnet")),
                    Some(s) if ip == s.cidr.network() || ip == s.cidr.broadcast() => {
                        Some(format!("address {ip} is not a host of {}", s.cidr))
                    }
                    Some(_) if own.contains(&ip) => {
                        Some(format!("address {ip} is this edge's own interface address"))
                    }
                    Some(s) if s.router == Some(ip) => {
                        Some(format!("address {ip} is the gateway of {}", s.cidr))
                    }
                    Some(_) => by_ip
                        .get(&ip)
                        .map(|other| format!("address {ip} is already reserved for {other}")),
                },
                None if !any_range => {
                    Some("has no address and no subnet has a range to take one from".to_owned())
                }
                None => None,
            }
        };
        if let Some(problem) = problem {
            warnings.push(format!("left out: {at} {problem}"));
            continue;
        }
        if let Some(name) = &m.boot_profile {
            if !profiles.contains_key(name) {
                warnings.push(format!(
                    "{at} names boot profile {name:?}, which the snapshot does not define"
                ));
            }
        }
        if let Some(ip) = m.ip {
            by_ip.insert(ip, m.mac);
        }
        out.insert(
            m.mac,
            Machine {
                mac: m.mac,
                ip: m.ip,
                hostname: m.hostname.clone(),
                boot_profile: m.boot_profile.clone(),
                netboot: m.netboot,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use ims_proto::MacAddr;

    use super::*;
    use crate::config::Config;

    fn base() -> DhcpConfig {
        Config::from_toml_str(
            r#"
            metrics_listen = "off"
            [[interface]]
            name = "eth1"
            address = "10.77.0.1"
            [[subnet]]
            cidr = "10.77.0.0/24"
            range = ["10.77.0.100", "10.77.0.199"]
            exclude = ["10.77.0.150"]
            allow_unknown = true
            [[boot_profile]]
            name = "file-profile"
            bios = "undionly.kpxe"
            [[machine]]
            mac = "52:54:00:00:00:99"
            hostname = "from-file"
            "#,
        )
        .unwrap()
        .dhcp
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, last])
    }

    fn machine(last: u8, ip: Option<[u8; 4]>) -> MachineEntry {
        MachineEntry {
            mac: mac(last),
            ip: ip.map(Ipv4Addr::from),
            hostname: format!("node-{last}"),
            boot_profile: Some("default".into()),
            netboot: true,
        }
    }

    fn subnet_entry(cidr: &str) -> SubnetEntry {
        SubnetEntry {
            cidr: cidr.parse().unwrap(),
            gateway: None,
            range_start: None,
            range_end: None,
            dns: vec![],
            lease_time_s: 3600,
            domain: None,
            boot_profile: None,
            next_server: None,
        }
    }

    #[test]
    fn snapshot_machines_and_profiles_replace_the_files_subnets_stay_without_any() {
        let snapshot = Snapshot {
            generation: 3,
            machines: vec![machine(1, Some([10, 77, 0, 11])), machine(2, None)],
            boot_profiles: vec![BootProfileEntry {
                name: "default".into(),
                uefi_x64: Some("ipxe.efi".into()),
                ..Default::default()
            }],
            subnets: vec![],
        };
        let eff = effective_dhcp(&base(), &snapshot);
        assert!(eff.warnings.is_empty(), "{:?}", eff.warnings);
        assert_eq!(
            eff.dhcp.machines.keys().copied().collect::<Vec<_>>(),
            vec![mac(1), mac(2)]
        );
        assert_eq!(
            eff.dhcp.boot_profiles.keys().collect::<Vec<_>>(),
            vec!["default"]
        );
        assert_eq!(eff.dhcp.subnets, base().subnets);
        assert_eq!(eff.dhcp.interfaces, base().interfaces);
        assert_eq!(eff.dhcp.offer_timeout, base().offer_timeout);
    }

    #[test]
    fn snapshot_subnets_replace_and_keep_local_knobs() {
        let mut s = subnet_entry("10.77.0.0/24");
        s.gateway = Some(Ipv4Addr::new(10, 77, 0, 254));
        s.range_start = Some(Ipv4Addr::new(10, 77, 0, 50));
        s.range_end = Some(Ipv4Addr::new(10, 77, 0, 60));
        let snapshot = Snapshot {
            generation: 1,
            machines: vec![machine(1, Some([10, 78, 0, 5]))],
            boot_profiles: vec![],
            subnets: vec![s, subnet_entry("10.78.0.0/24")],
        };
        let eff = effective_dhcp(&base(), &snapshot);
        assert_eq!(eff.dhcp.subnets.len(), 2);
        let first = &eff.dhcp.subnets[0];
        assert_eq!(first.router, Some(Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(
            first.range,
            Some((Ipv4Addr::new(10, 77, 0, 50), Ipv4Addr::new(10, 77, 0, 60)))
        );
        assert!(first.allow_unknown, "kept from the file");
        assert_eq!(first.exclude.len(), 1, "kept from the file");
        assert!(!eff.dhcp.subnets[1].allow_unknown);
        assert!(eff.dhcp.machines.contains_key(&mac(1)));
        // The machine names a profile the snapshot lacks: kept, with a warning.
        assert_eq!(eff.warnings.len(), 1, "{:?}", eff.warnings);
        assert!(
            eff.warnings[0].contains("\"default\""),
            "{:?}",
            eff.warnings
        );
    }

    #[test]
    fn bad_entries_are_left_out_with_a_warning() {
        let mut bad_range = subnet_entry("10.79.0.0/24");
        bad_range.range_start = Some(Ipv4Addr::new(10, 79, 0, 9));
        bad_range.range_end = Some(Ipv4Addr::new(10, 79, 0, 1));
        let mut short_lease = subnet_entry("10.80.0.0/24");
        short_lease.lease_time_s = 5;
        let mut bad_host = machine(4, Some([10, 77, 0, 14]));
        bad_host.hostname = "not valid!".into();
        let snapshot = Snapshot {
            generation: 1,
            machines: vec![
                machine(1, Some([10, 77, 0, 11])),
                machine(2, Some([10, 77, 0, 11])), // duplicate address
                machine(3, Some([10, 99, 0, 3])),  // outside every subnet
                bad_host,
                machine(5, Some([10, 77, 0, 1])), // the edge's own address
                machine(6, Some([10, 77, 0, 255])), // broadcast
            ],
            boot_profiles: vec![
                BootProfileEntry {
                    name: "default".into(),
                    ..Default::default()
                },
                BootProfileEntry {
                    name: "evil".into(),
                    http: Some("not-a-url".into()),
                    ..Default::default()
                },
                BootProfileEntry {
                    name: "inject".into(),
                    bios: Some("undionly.kpxe".into()),
                    kernel: Some("vmlinuz".into()),
                    cmdline: Some("quiet {rm -rf}".into()),
                    ..Default::default()
                },
            ],
            subnets: vec![
                subnet_entry("10.77.0.0/24"),
                subnet_entry("10.77.0.0/25"), // overlaps
                bad_range,
                short_lease,
            ],
        };
        let eff = effective_dhcp(&base(), &snapshot);
        assert_eq!(
            eff.dhcp.machines.keys().copied().collect::<Vec<_>>(),
            vec![mac(1)]
        );
        assert_eq!(
            eff.dhcp.boot_profiles.keys().collect::<Vec<_>>(),
            vec!["default", "inject"]
        );
        let inject = &eff.dhcp.boot_profiles["inject"];
        assert_eq!(
            inject.bios.as_deref(),
            Some("undionly.kpxe"),
            "PXE file kept"
        );
        assert_eq!(
            (&inject.kernel, &inject.cmdline),
            (&None, &None),
            "script dropped"
        );
        assert_eq!(eff.dhcp.subnets.len(), 1);
        let text = eff.warnings.join("\n");
        for needle in [
            "already reserved",
            "in no served subnet",
            "not a valid host name",
            "own interface address",
            "not a host of",
            "overlaps",
            "after its end",
            "lease time 5 s",
            "evil",
            "inject",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}
