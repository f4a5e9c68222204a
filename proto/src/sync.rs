//! Machine sync: the site's desired state (machines, boot profiles, subnets) as full
//! [`Snapshot`]s and incremental [`Delta`]s.
//!
//! # Generations
//!
//! The control plane numbers the desired state of each site with a `generation` that grows
//! with every change. A [`Snapshot`] replaces everything the edge holds; a [`Delta`] turns
//! generation `base_generation` into `generation` and applies only to exactly that base
//! ([`Snapshot::apply_delta`] checks). After storing either durably, the edge answers
//! [`SnapshotAck`]; when a delta does not apply it sends [`ResyncRequest`] and the control
//! plane answers with a full snapshot.
//!
//! Entries are keyed by MAC (machines), name (boot profiles) and network (subnets). A
//! normalised snapshot ([`Snapshot::normalize`]) lists each key once, sorted by key;
//! [`Delta::between`] and [`Snapshot::apply_delta`] keep that form, so
//! `old.apply_delta(&Delta::between(&old, &new))` yields `new` normalised.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::MacAddr;
use crate::cidr::Ipv4Cidr;

/// The site's full desired state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Generation of this state.
    pub generation: u64,
    /// Registered machines of the site.
    #[serde(default)]
    pub machines: Vec<MachineEntry>,
    /// Boot profiles the machines (or subnets) refer to.
    #[serde(default)]
    pub boot_profiles: Vec<BootProfileEntry>,
    /// Subnets served at the site.
    #[serde(default)]
    pub subnets: Vec<SubnetEntry>,
}

/// Changes from generation `base_generation` to `generation`. Removals apply before upserts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// Generation after applying.
    pub generation: u64,
    /// The generation this delta applies to.
    pub base_generation: u64,
    /// Machines added or changed (whole entries).
    #[serde(default)]
    pub upsert_machines: Vec<MachineEntry>,
    /// Machines removed, by MAC.
    #[serde(default)]
    pub remove_machines: Vec<MacAddr>,
    /// Boot profiles added or changed (whole entries).
    #[serde(default)]
    pub upsert_boot_profiles: Vec<BootProfileEntry>,
    /// Boot profiles removed, by name.
    #[serde(default)]
    pub remove_boot_profiles: Vec<String>,
    /// Subnets added or changed (whole entries).
    #[serde(default)]
    pub upsert_subnets: Vec<SubnetEntry>,
    /// Subnets removed, by network.
    #[serde(default)]
    pub remove_subnets: Vec<Ipv4Cidr>,
}

/// The edge has durably stored this generation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotAck {
    /// The generation now in the edge's store.
    pub generation: u64,
}

/// The edge asks for a full [`Snapshot`] (a [`Delta`] did not apply, or its stored state is
/// unusable).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResyncRequest {
    /// The generation the edge holds, if any.
    #[serde(default)]
    pub have_generation: Option<u64>,
    /// Why, for logs.
    #[serde(default)]
    pub reason: String,
}

/// A registered machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MachineEntry {
    /// The machine's boot NIC; the key.
    pub mac: MacAddr,
    /// Reserved address; `None` takes one from the subnet's range.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Host name handed out in DHCP (option 12).
    pub hostname: String,
    /// Boot profile name; `None` uses the subnet's.
    #[serde(default)]
    pub boot_profile: Option<String>,
    /// Whether the machine gets boot files (off: DHCP only, boots from disk).
    pub netboot: bool,
}

/// A boot profile: which file each firmware type gets, and what iPXE boots.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootProfileEntry {
    /// Profile name; the key.
    pub name: String,
    /// Boot file for legacy BIOS PXE.
    #[serde(default)]
    pub bios: Option<String>,
    /// Boot file for UEFI x86-64 PXE.
    #[serde(default)]
    pub uefi_x64: Option<String>,
    /// Boot file for UEFI ARM64 PXE.
    #[serde(default)]
    pub uefi_arm64: Option<String>,
    /// URL or path for UEFI HTTP boot (x86-64).
    #[serde(default)]
    pub http: Option<String>,
    /// URL or path for UEFI HTTP boot (ARM64).
    #[serde(default)]
    pub http_arm64: Option<String>,
    /// Custom iPXE script (replaces the generated one).
    #[serde(default)]
    pub ipxe_script: Option<String>,
    /// Kernel iPXE boots.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Initrd iPXE loads.
    #[serde(default)]
    pub initrd: Option<String>,
    /// Kernel command line, at most [`MAX_CMDLINE_LEN`] bytes.
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// Longest kernel command line a boot profile may carry, in bytes: x86 Linux's
/// `COMMAND_LINE_SIZE`. The control plane refuses a longer one when it is written; the edge
/// serves a profile whose command line is longer without kernel, initrd and command line.
pub const MAX_CMDLINE_LEN: usize = 2048;

/// Most TFTP transfers one edge runs at once (`[tftp] max_transfers`): each holds a UDP port of
/// its own. The control plane's TFTP settings use the same bound.
pub const MAX_TFTP_TRANSFERS: usize = 16_384;

/// A subnet served at the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetEntry {
    /// The network; the key.
    pub cidr: Ipv4Cidr,
    /// Default gateway (option 3).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// First address of the dynamic range.
    #[serde(default)]
    pub range_start: Option<Ipv4Addr>,
    /// Last address of the dynamic range.
    #[serde(default)]
    pub range_end: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Lease time, seconds.
    pub lease_time_s: u32,
    /// Domain name (option 15).
    #[serde(default)]
    pub domain: Option<String>,
    /// Boot profile for machines without one of their own.
    #[serde(default)]
    pub boot_profile: Option<String>,
    /// TFTP server address (siaddr) when it is not the edge itself.
    #[serde(default)]
    pub next_server: Option<Ipv4Addr>,
}

/// A [`Delta`] does not apply to the snapshot at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "delta from generation {base} to {target} does not apply to generation {have}; request a \
     full snapshot (ResyncRequest)"
)]
pub struct DeltaMismatch {
    /// The generation held.
    pub have: u64,
    /// The delta's base generation.
    pub base: u64,
    /// The delta's target generation.
    pub target: u64,
}

impl Snapshot {
    /// Sort every list by key and keep one entry per key (the last one listed).
    pub fn normalize(&mut self) {
        self.machines = keyed(std::mem::take(&mut self.machines), |m| m.mac)
            .into_values()
            .collect();
        self.boot_profiles = keyed(std::mem::take(&mut self.boot_profiles), |p| p.name.clone())
            .into_values()
            .collect();
        self.subnets = keyed(std::mem::take(&mut self.subnets), |s| s.cidr)
            .into_values()
            .collect();
    }

    /// Apply `delta` (removals, then upserts) and move to its generation. The result is
    /// normalised.
    ///
    /// # Errors
    /// [`DeltaMismatch`] when `delta.base_generation` is not this snapshot's generation; the
    /// snapshot is then unchanged.
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<(), DeltaMismatch> {
        if delta.base_generation != self.generation {
            return Err(DeltaMismatch {
                have: self.generation,
                base: delta.base_generation,
                target: delta.generation,
            });
        }
        self.machines = patch(
            std::mem::take(&mut self.machines),
            &delta.remove_machines,
            &delta.upsert_machines,
            |m| m.mac,
        );
        self.boot_profiles = patch(
            std::mem::take(&mut self.boot_profiles),
            &delta.remove_boot_profiles,
            &delta.upsert_boot_profiles,
            |p| p.name.clone(),
        );
        self.subnets = patch(
            std::mem::take(&mut self.subnets),
            &delta.remove_subnets,
            &delta.upsert_subnets,
            |s| s.cidr,
        );
        self.generation = delta.generation;
        Ok(())
    }
}

impl Delta {
    /// The delta that turns `old` into `new` (both taken as normalised: for a repeated key the
    /// last entry counts). Lists are sorted by key.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        let (upsert_machines, remove_machines) = diff(&old.machines, &new.machines, |m| m.mac);
        let (upsert_boot_profiles, remove_boot_profiles) =
            diff(&old.boot_profiles, &new.boot_profiles, |p| p.name.clone());
        let (upsert_subnets, remove_subnets) = diff(&old.subnets, &new.subnets, |s| s.cidr);
        Self {
            generation: new.generation,
            base_generation: old.generation,
            upsert_machines,
            remove_machines,
            upsert_boot_profiles,
            remove_boot_profiles,
            upsert_subnets,
            remove_subnets,
        }
    }

    /// Whether the delta changes no entry (it may still move the generation).
    pub fn is_empty(&self) -> bool {
        self.upsert_machines.is_empty()
            && self.remove_machines.is_empty()
            && self.upsert_boot_profiles.is_empty()
            && self.remove_boot_profiles.is_empty()
            && self.upsert_subnets.is_empty()
            && self.remove_subnets.is_empty()
    }
}

/// Entries by key; the last entry of a repeated key wins.
fn keyed<T, K: Ord>(items: Vec<T>, key: impl Fn(&T) -> K) -> BTreeMap<K, T> {
    items.into_iter().map(|item| (key(&item), item)).collect()
}

fn patch<T: Clone, K: Ord + Clone>(
    items: Vec<T>,
    removes: &[K],
    upserts: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut map = keyed(items, &key);
    for k in removes {
        map.remove(k);
    }
    for item in upserts {
        map.insert(key(item), item.clone());
    }
    map.into_values().collect()
}

fn diff<T: Clone + PartialEq, K: Ord>(
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Vec<K>) {
    let old: BTreeMap<K, &T> = old.iter().map(|item| (key(item), item)).collect();
    let new: BTreeMap<K, &T> = new.iter().map(|item| (key(item), item)).collect();
    let upserts = new
        .iter()
        .filter(|(k, item)| old.get(k) != Some(item))
        .map(|(_, item)| (*item).clone())
        .collect();
    let removes = old.into_keys().filter(|k| !new.contains_key(k)).collect();
    (upserts, removes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(last: u8, hostname: &str) -> MachineEntry {
        MachineEntry {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, last]),
            ip: Some(Ipv4Addr::new(10, 0, 0, last)),
            hostname: hostname.to_owned(),
            boot_profile: Some("default".to_owned()),
            netboot: true,
        }
    }

    fn subnet(cidr: &str) -> SubnetEntry {
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
    fn delta_applies_only_to_its_base_and_round_trips() {
        let old = Snapshot {
            generation: 4,
            machines: vec![machine(2, "b"), machine(1, "a"), machine(3, "c")],
            boot_profiles: vec![BootProfileEntry {
                name: "default".into(),
                ..Default::default()
            }],
            subnets: vec![subnet("10.0.0.0/24")],
        };
        let mut changed = machine(2, "b");
        changed.netboot = false;
        let new = Snapshot {
            generation: 9,
            machines: vec![machine(1, "a"), changed.clone(), machine(4, "d")],
            boot_profiles: vec![],
            subnets: vec![subnet("10.0.0.0/24"), subnet("10.0.1.0/24")],
        };
        let delta = Delta::between(&old, &new);
        assert_eq!(delta.base_generation, 4);
        assert_eq!(delta.generation, 9);
        assert_eq!(delta.upsert_machines, vec![changed, machine(4, "d")]);
        assert_eq!(delta.remove_machines, vec![machine(3, "c").mac]);
        assert_eq!(delta.remove_boot_profiles, vec!["default".to_owned()]);
        assert_eq!(delta.upsert_subnets, vec![subnet("10.0.1.0/24")]);
        assert!(delta.remove_subnets.is_empty());
        assert!(!delta.is_empty());

        let mut stale = old.clone();
        stale.generation = 3;
        let err = stale.apply_delta(&delta).unwrap_err();
        assert_eq!(
            err,
            DeltaMismatch {
                have: 3,
                base: 4,
                target: 9
            }
        );
        assert!(err.to_string().contains("ResyncRequest"), "{err}");
        assert_eq!(stale.generation, 3, "a refused delta changes nothing");

        let mut applied = old.clone();
        applied.apply_delta(&delta).unwrap();
        let mut expected = new.clone();
        expected.normalize();
        assert_eq!(applied, expected);
        assert!(Delta::between(&applied, &expected).is_empty());
    }

    #[test]
    fn removals_apply_before_upserts_and_normalize_keeps_last() {
        let mut snap = Snapshot {
            generation: 1,
            machines: vec![machine(1, "first"), machine(1, "second")],
            ..Default::default()
        };
        snap.normalize();
        assert_eq!(snap.machines, vec![machine(1, "second")]);
        let delta = Delta {
            generation: 2,
            base_generation: 1,
            upsert_machines: vec![machine(1, "third")],
            remove_machines: vec![machine(1, "").mac],
            ..Default::default()
        };
        snap.apply_delta(&delta).unwrap();
        assert_eq!(snap.machines, vec![machine(1, "third")]);
        assert_eq!(snap.generation, 2);
    }
}
