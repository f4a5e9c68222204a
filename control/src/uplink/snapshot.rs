//! The desired state of a site as the edge gets it: a [`Snapshot`] built from the store.
//!
//! * machines: those of every cluster of the site (MAC, reserved IP, host name, boot profile
//!   name, netboot on/off);
//! * boot profiles: the site's, the global ones (no site), and any other profile one of the
//!   site's machines names;
//! * subnets: the site's IP pools.
//!
//! The generation is the store's `config_rev`, read in the same read transaction as the rows
//! (so a generation always names exactly one content). [`build`] is pure (rows in, snapshot
//! out; a malformed stored value skips its row and is reported); [`load`] reads the rows;
//! [`SnapshotCache`] builds each site's snapshot once per change however many sessions want it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use ims_proto::{BootProfileEntry, Ipv4Cidr, MacAddr, MachineEntry, Snapshot, SubnetEntry};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Backend, Db, StoreError};
use crate::store::ippools::DEFAULT_LEASE_TIME;
use crate::uplink::revs;

/// A machine row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineRow {
    /// Stored MAC.
    pub mac: String,
    /// Stored IP.
    pub ip: Option<String>,
    /// Host name.
    pub hostname: String,
    /// Its boot profile's name.
    pub boot_profile: Option<String>,
    /// Netboot on.
    pub netboot: bool,
}

/// A boot profile row: its name and the file columns in
/// [`FILE_COLUMNS`](crate::store::boot_profiles::FILE_COLUMNS) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileRow {
    /// Name.
    pub name: String,
    /// bios, uefi_x64, uefi_arm64, http, http_arm64, ipxe_script, kernel, initrd, cmdline.
    pub files: [Option<String>; 9],
}

/// An IP pool row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolRow {
    /// Network.
    pub cidr: String,
    /// Gateway.
    pub gateway: Option<String>,
    /// Range start.
    pub range_start: Option<String>,
    /// Range end.
    pub range_end: Option<String>,
    /// DNS servers, comma separated.
    pub dns: String,
    /// Lease time, seconds.
    pub lease_time: i64,
}

/// A built snapshot and the rows that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The snapshot (normalised).
    pub snapshot: Snapshot,
    /// One line per skipped row, saying why.
    pub skipped: Vec<String>,
}

fn ip(value: Option<&str>) -> Result<Option<Ipv4Addr>, String> {
    value
        .map(|v| v.trim().parse::<Ipv4Addr>().map_err(|_| v.to_owned()))
        .transpose()
}

/// Builds the snapshot of generation `generation` from rows (pure).
#[must_use]
pub fn build(
    generation: u64,
    machines: Vec<MachineRow>,
    profiles: Vec<ProfileRow>,
    pools: Vec<PoolRow>,
) -> Built {
    let mut skipped = Vec::new();
    let mut snapshot = Snapshot {
        generation,
        ..Snapshot::default()
    };
    for m in machines {
        let Ok(mac) = m.mac.parse::<MacAddr>() else {
            skipped.push(format!("machine `{}`: bad MAC `{}`", m.hostname, m.mac));
            continue;
        };
        let Ok(ip) = ip(m.ip.as_deref()) else {
            skipped.push(format!("machine {mac}: bad IP `{:?}`", m.ip));
            continue;
        };
        snapshot.machines.push(MachineEntry {
            mac,
            ip,
            hostname: m.hostname,
            boot_profile: m.boot_profile,
            netboot: m.netboot,
        });
    }
    for p in profiles {
        let [
            bios,
            uefi_x64,
            uefi_arm64,
            http,
            http_arm64,
            ipxe_script,
            kernel,
            initrd,
            cmdline,
        ] = p.files;
        snapshot.boot_profiles.push(BootProfileEntry {
            name: p.name,
            bios,
            uefi_x64,
            uefi_arm64,
            http,
            http_arm64,
            ipxe_script,
            kernel,
            initrd,
            cmdline,
        });
    }
    for pool in pools {
        match subnet(&pool) {
            Ok(s) => snapshot.subnets.push(s),
            Err(why) => skipped.push(format!("IP pool {}: {why}", pool.cidr)),
        }
    }
    snapshot.normalize();
    Built { snapshot, skipped }
}

fn subnet(pool: &PoolRow) -> Result<SubnetEntry, String> {
    let cidr: Ipv4Cidr = pool
        .cidr
        .trim()
        .parse()
        .map_err(|e| format!("bad network: {e}"))?;
    let bad = |v: String| format!("bad address `{v}`");
    let dns = pool
        .dns
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Ipv4Addr>().map_err(|_| bad(s.to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    let lease_time_s = u32::try_from(pool.lease_time)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(u32::try_from(DEFAULT_LEASE_TIME).unwrap_or(3600));
    Ok(SubnetEntry {
        cidr,
        gateway: ip(pool.gateway.as_deref()).map_err(bad)?,
        range_start: ip(pool.range_start.as_deref()).map_err(bad)?,
        range_end: ip(pool.range_end.as_deref()).map_err(bad)?,
        dns,
        lease_time_s,
        domain: None,
        boot_profile: None,
        next_server: None,
    })
}

fn machine_row(row: &AnyRow) -> Result<MachineRow, sqlx::Error> {
    Ok(MachineRow {
        mac: row.try_get(0)?,
        ip: row.try_get(1)?,
        hostname: row.try_get(2)?,
        boot_profile: row.try_get(3)?,
        netboot: row.try_get::<i64, _>(4)? != 0,
    })
}

fn profile_row(row: &AnyRow) -> Result<ProfileRow, sqlx::Error> {
    let mut files: [Option<String>; 9] = Default::default();
    for (i, f) in files.iter_mut().enumerate() {
        *f = row.try_get(i + 1)?;
    }
    Ok(ProfileRow {
        name: row.try_get(0)?,
        files,
    })
}

fn pool_row(row: &AnyRow) -> Result<PoolRow, sqlx::Error> {
    Ok(PoolRow {
        cidr: row.try_get(0)?,
        gateway: row.try_get(1)?,
        range_start: row.try_get(2)?,
        range_end: row.try_get(3)?,
        dns: row.try_get(4)?,
        lease_time: row.try_get(5)?,
    })
}

/// Reads site `site_id`'s rows and `config_rev` in one read transaction and builds its
/// snapshot.
///
/// # Errors
/// The store failed.
pub async fn load(db: &Db, site_id: i64) -> Result<Built, StoreError> {
    let begin = match db.backend() {
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    let mut tx = db.pool().begin_with(begin).await?;
    let generation = revs::read_config_rev(&mut tx).await?;
    let machines = sqlx::query(
        "SELECT m.mac, m.ip, m.hostname, b.name, m.netboot FROM machines m \
         JOIN clusters c ON c.id = m.cluster_id \
         LEFT JOIN boot_profiles b ON b.id = m.boot_profile_id \
         WHERE c.site_id = $1 ORDER BY m.id",
    )
    .bind(site_id)
    .fetch_all(&mut *tx)
    .await?;
    let profiles = sqlx::query(
        "SELECT name, bios, uefi_x64, uefi_arm64, http, http_arm64, ipxe_script, kernel, \
         initrd, cmdline FROM boot_profiles \
         WHERE site_id = $1 OR site_id IS NULL OR id IN (SELECT m.boot_profile_id \
         FROM machines m JOIN clusters c ON c.id = m.cluster_id WHERE c.site_id = $1) \
         ORDER BY id",
    )
    .bind(site_id)
    .fetch_all(&mut *tx)
    .await?;
    let pools = sqlx::query(
        "SELECT cidr, gateway, range_start, range_end, dns, lease_time FROM ip_pools \
         WHERE site_id = $1 ORDER BY id",
    )
    .bind(site_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(build(
        generation,
        machines.iter().map(machine_row).collect::<Result<_, _>>()?,
        profiles.iter().map(profile_row).collect::<Result<_, _>>()?,
        pools.iter().map(pool_row).collect::<Result<_, _>>()?,
    ))
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Snapshot>>>>;

/// The latest snapshot of each site, built once per change and shared by its sessions.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    sites: Mutex<BTreeMap<i64, Slot>>,
}

impl SnapshotCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Site `site_id`'s snapshot of generation `at_least` or newer: the cached one when it is
    /// that new, else a fresh build (one at a time per site; waiters reuse it).
    ///
    /// # Errors
    /// The store failed.
    pub async fn get(
        &self,
        db: &Db,
        site_id: i64,
        at_least: u64,
    ) -> Result<Arc<Snapshot>, StoreError> {
        let slot = {
            let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
            sites.entry(site_id).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(s) = cached.as_ref().filter(|s| s.generation >= at_least) {
            return Ok(s.clone());
        }
        let built = load(db, site_id).await?;
        if !built.skipped.is_empty() {
            tracing::warn!(
                site_id,
                skipped = ?built.skipped,
                "rows of the site could not be put in the edge snapshot; fix them through the API"
            );
        }
        let snapshot = Arc::new(built.snapshot);
        *cached = Some(snapshot.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(mac: &str, ip: Option<&str>) -> MachineRow {
        MachineRow {
            mac: mac.into(),
            ip: ip.map(Into::into),
            hostname: format!("host-{mac}"),
            boot_profile: Some("default".into()),
            netboot: true,
        }
    }

    #[test]
    fn rows_become_a_sorted_snapshot() {
        let built = build(
            7,
            vec![
                machine("52:54:00:00:00:02", Some("10.0.0.2")),
                machine("52:54:00:00:00:01", None),
            ],
            vec![ProfileRow {
                name: "default".into(),
                files: [
                    Some("pxelinux.0".into()),
                    Some("ipxe.efi".into()),
                    None,
                    None,
                    None,
                    None,
                    Some("vmlinuz".into()),
                    Some("initrd.img".into()),
                    Some("console=ttyS0".into()),
                ],
            }],
            vec![PoolRow {
                cidr: "10.0.0.0/24".into(),
                gateway: Some("10.0.0.1".into()),
                range_start: Some("10.0.0.100".into()),
                range_end: Some("10.0.0.200".into()),
                dns: "10.0.0.53, 1.1.1.1".into(),
                lease_time: 600,
            }],
        );
        assert!(built.skipped.is_empty(), "{:?}", built.skipped);
        let s = built.snapshot;
        assert_eq!(s.generation, 7);
        assert_eq!(s.machines.len(), 2);
        assert_eq!(s.machines[0].mac.to_string(), "52:54:00:00:00:01");
        assert_eq!(s.machines[0].ip, None);
        assert_eq!(s.machines[1].ip, Some(Ipv4Addr::new(10, 0, 0, 2)));
        let p = &s.boot_profiles[0];
        assert_eq!(p.bios.as_deref(), Some("pxelinux.0"));
        assert_eq!(p.uefi_x64.as_deref(), Some("ipxe.efi"));
        assert_eq!(p.kernel.as_deref(), Some("vmlinuz"));
        assert_eq!(p.cmdline.as_deref(), Some("console=ttyS0"));
        let n = &s.subnets[0];
        assert_eq!(n.cidr.to_string(), "10.0.0.0/24");
        assert_eq!(n.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            n.dns,
            vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(n.lease_time_s, 600);
    }

    #[test]
    fn malformed_rows_are_skipped_and_reported() {
        let built = build(
            1,
            vec![
                machine("not-a-mac", None),
                machine("52:54:00:00:00:03", Some("10.0.0.300")),
                machine("52:54:00:00:00:04", None),
            ],
            vec![],
            vec![
                PoolRow {
                    cidr: "10.9.0.0/33".into(),
                    ..PoolRow::default()
                },
                PoolRow {
                    cidr: "10.8.0.0/24".into(),
                    dns: "8.8.8.x".into(),
                    ..PoolRow::default()
                },
                PoolRow {
                    cidr: "10.7.0.0/24".into(),
                    lease_time: 0,
                    ..PoolRow::default()
                },
            ],
        );
        assert_eq!(built.snapshot.machines.len(), 1);
        assert_eq!(built.snapshot.subnets.len(), 1);
        assert_eq!(built.snapshot.subnets[0].lease_time_s, 3600);
        assert_eq!(built.skipped.len(), 4, "{:?}", built.skipped);
        assert!(built.skipped[0].contains("not-a-mac"));
    }
}
