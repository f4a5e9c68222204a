//! Store queries of `machines` and their latest resource metrics (`machine_metrics`).
//!
//! Listing joins `clusters` and `boot_profiles` for the readable names, so a page of 10,000
//! machines costs two queries (the count and the page), whatever the filters. MACs are stored
//! in [`MacAddr`]'s canonical form (`AA:BB:CC:DD:EE:FF`), IPs as dotted quads.

use std::net::Ipv4Addr;

use ims_proto::MacAddr;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::api::page::PageRequest;
use crate::db::{Db, StoreError};
use crate::error::FieldError;
use crate::model::{Health, MachineRole, MachineStatus, OsType};
use crate::store::clusters::{Bind, Conditions, NameOrId, count_and_page, decode_enum, find_ref};
use crate::store::events;

/// Most CPU cores a machine may declare.
pub const MAX_CPU_CORES: u32 = 4096;

/// A machine as stored, with its cluster's and boot profile's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// `machines.id`.
    pub id: i64,
    /// Its cluster.
    pub cluster_id: i64,
    /// That cluster's name.
    pub cluster_name: String,
    /// RFC 1123 host name.
    pub hostname: String,
    /// Fixed IPv4 address, if any (unique).
    pub ip: Option<Ipv4Addr>,
    /// Boot interface MAC (unique).
    pub mac: MacAddr,
    /// CPU cores.
    pub cpu_cores: u32,
    /// Role in the cluster.
    pub role: MachineRole,
    /// Operating system.
    pub os_type: OsType,
    /// Lifecycle status.
    pub status: MachineStatus,
    /// Health.
    pub health: Health,
    /// Boot profile, if any.
    pub boot_profile_id: Option<i64>,
    /// That profile's name.
    pub boot_profile_name: Option<String>,
    /// Whether edges answer its netboot requests.
    pub netboot: bool,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// The writable fields of a machine (already validated; references checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFields {
    /// Its cluster.
    pub cluster_id: i64,
    /// RFC 1123 host name.
    pub hostname: String,
    /// Fixed IPv4 address.
    pub ip: Option<Ipv4Addr>,
    /// Boot interface MAC.
    pub mac: MacAddr,
    /// CPU cores (0–[`MAX_CPU_CORES`]).
    pub cpu_cores: u32,
    /// Role.
    pub role: MachineRole,
    /// Operating system.
    pub os_type: OsType,
    /// Lifecycle status.
    pub status: MachineStatus,
    /// Health.
    pub health: Health,
    /// Boot profile.
    pub boot_profile_id: Option<i64>,
    /// Whether edges answer its netboot requests.
    pub netboot: bool,
}

impl From<&Machine> for MachineFields {
    fn from(m: &Machine) -> Self {
        Self {
            cluster_id: m.cluster_id,
            hostname: m.hostname.clone(),
            ip: m.ip,
            mac: m.mac,
            cpu_cores: m.cpu_cores,
            role: m.role,
            os_type: m.os_type,
            status: m.status,
            health: m.health,
            boot_profile_id: m.boot_profile_id,
            netboot: m.netboot,
        }
    }
}

/// Which machines a listing returns (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineFilter {
    /// In this cluster.
    pub cluster: Option<NameOrId>,
    /// In a cluster of this site.
    pub site: Option<NameOrId>,
    /// With this status.
    pub status: Option<MachineStatus>,
    /// With this role.
    pub role: Option<MachineRole>,
    /// With this health.
    pub health: Option<Health>,
    /// With this MAC.
    pub mac: Option<MacAddr>,
    /// With this IP.
    pub ip: Option<Ipv4Addr>,
    /// With this host name (case-insensitive).
    pub hostname: Option<String>,
}

const SELECT: &str = "SELECT m.id, m.cluster_id, c.name, m.hostname, m.ip, m.mac, m.cpu_cores, \
     m.role, m.os_type, m.status, m.health, m.boot_profile_id, b.name, m.netboot, \
     m.created_at, m.updated_at \
     FROM machines m JOIN clusters c ON c.id = m.cluster_id \
     LEFT JOIN boot_profiles b ON b.id = m.boot_profile_id";

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

fn decode(row: &AnyRow) -> Result<Machine, StoreError> {
    let ip: Option<String> = row.try_get(4)?;
    let cpu_cores: i64 = row.try_get(6)?;
    let netboot: i64 = row.try_get(13)?;
    Ok(Machine {
        id: row.try_get(0)?,
        cluster_id: row.try_get(1)?,
        cluster_name: row.try_get(2)?,
        hostname: row.try_get(3)?,
        ip: ip.map(|s| s.parse()).transpose().map_err(decode_err)?,
        mac: row.try_get::<String, _>(5)?.parse().map_err(decode_err)?,
        cpu_cores: u32::try_from(cpu_cores).map_err(decode_err)?,
        role: decode_enum(&row.try_get::<String, _>(7)?)?,
        os_type: decode_enum(&row.try_get::<String, _>(8)?)?,
        status: decode_enum(&row.try_get::<String, _>(9)?)?,
        health: decode_enum(&row.try_get::<String, _>(10)?)?,
        boot_profile_id: row.try_get(11)?,
        boot_profile_name: row.try_get(12)?,
        netboot: netboot != 0,
        created_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
    })
}

/// One page of machines matching `filter`, ordered by id, and the total count (two queries).
///
/// # Errors
/// The store failed.
pub async fn list(
    db: &Db,
    filter: &MachineFilter,
    page: PageRequest,
) -> Result<(i64, Vec<Machine>), StoreError> {
    let mut c = Conditions::default();
    if let Some(cluster) = &filter.cluster {
        c.push_ref(cluster, "m.cluster_id = ?", "LOWER(c.name) = LOWER(?)");
    }
    if let Some(site) = &filter.site {
        c.push_ref(
            site,
            "c.site_id = ?",
            "c.site_id IN (SELECT id FROM sites WHERE LOWER(name) = LOWER(?))",
        );
    }
    if let Some(status) = filter.status {
        c.push("m.status = ?", Bind::Text(status.as_str().to_owned()));
    }
    if let Some(role) = filter.role {
        c.push("m.role = ?", Bind::Text(role.as_str().to_owned()));
    }
    if let Some(health) = filter.health {
        c.push("m.health = ?", Bind::Text(health.as_str().to_owned()));
    }
    if let Some(mac) = filter.mac {
        c.push("m.mac = ?", Bind::Text(mac.to_string()));
    }
    if let Some(ip) = filter.ip {
        c.push("m.ip = ?", Bind::Text(ip.to_string()));
    }
    if let Some(hostname) = &filter.hostname {
        c.push(
            "LOWER(m.hostname) = LOWER(?)",
            Bind::Text(hostname.trim().to_owned()),
        );
    }
    count_and_page(
        db,
        "machines m JOIN clusters c ON c.id = m.cluster_id",
        SELECT,
        "m.id",
        &c,
        page,
        decode,
    )
    .await
}

/// The machine `id`, if it exists.
///
/// # Errors
/// The store failed.
pub async fn get<'c, E: Executor<'c, Database = Any>>(
    e: E,
    id: i64,
) -> Result<Option<Machine>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE m.id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The machine with boot interface `mac`, if there is one (for edges reporting by MAC).
///
/// # Errors
/// The store failed.
pub async fn find_by_mac<'c, E: Executor<'c, Database = Any>>(
    e: E,
    mac: MacAddr,
) -> Result<Option<Machine>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE m.mac = $1"))
        .bind(mac.to_string())
        .fetch_optional(e)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The id of the boot profile `r` names, if there is one.
///
/// # Errors
/// The store failed.
pub async fn find_boot_profile<'c, E: Executor<'c, Database = Any>>(
    e: E,
    r: &NameOrId,
) -> Result<Option<i64>, StoreError> {
    find_ref(e, "boot_profiles", r).await
}

/// 409 on `mac` or `ip` if another machine (other than `except`) has them, naming it.
async fn check_unique(
    conn: &mut AnyConnection,
    f: &MachineFields,
    except: i64,
) -> Result<(), StoreError> {
    let mac = f.mac.to_string();
    let ip = f.ip.map(|ip| ip.to_string());
    let rows = sqlx::query(
        "SELECT id, hostname, mac, ip FROM machines WHERE (mac = $1 OR ip = $2) AND id <> $3 \
         ORDER BY id LIMIT 2",
    )
    .bind(mac.clone())
    .bind(ip.clone())
    .bind(except)
    .fetch_all(&mut *conn)
    .await?;
    for field in ["mac", "ip"] {
        for row in &rows {
            let (id, hostname): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            let (other_mac, other_ip): (String, Option<String>) =
                (row.try_get(2)?, row.try_get(3)?);
            let (hit, what) = if field == "mac" {
                (other_mac == mac, format!("MAC {mac}"))
            } else {
                (
                    other_ip.is_some() && other_ip == ip,
                    format!("IP {}", ip.as_deref().unwrap_or_default()),
                )
            };
            if hit {
                return Err(StoreError::Conflict {
                    field: field.to_owned(),
                    message: format!(
                        "{what} is already used by machine {id} (`{hostname}`); each machine \
                         needs its own"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Inserts a machine and links earlier provisioning events of its MAC to it; returns its id.
///
/// # Errors
/// MAC or IP taken (409 `mac`/`ip`), a reference is missing, or the store failed.
pub async fn create(
    conn: &mut AnyConnection,
    f: &MachineFields,
    now: i64,
) -> Result<i64, StoreError> {
    check_unique(conn, f, 0).await?;
    let row = sqlx::query(
        "INSERT INTO machines (cluster_id, hostname, ip, mac, cpu_cores, role, os_type, status, \
         health, boot_profile_id, netboot, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
    )
    .bind(f.cluster_id)
    .bind(f.hostname.clone())
    .bind(f.ip.map(|ip| ip.to_string()))
    .bind(f.mac.to_string())
    .bind(i64::from(f.cpu_cores))
    .bind(f.role.as_str())
    .bind(f.os_type.as_str())
    .bind(f.status.as_str())
    .bind(f.health.as_str())
    .bind(f.boot_profile_id)
    .bind(i64::from(f.netboot))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get(0)?;
    events::link_to_machine(&mut *conn, id, f.mac).await?;
    Ok(id)
}

/// Replaces machine `id`'s writable fields in place (same id, same `created_at`).
///
/// # Errors
/// No such machine (`NotFound`), MAC or IP taken, a reference is missing, or the store failed.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    f: &MachineFields,
    now: i64,
) -> Result<(), StoreError> {
    check_unique(conn, f, id).await?;
    let done = sqlx::query(
        "UPDATE machines SET cluster_id = $1, hostname = $2, ip = $3, mac = $4, cpu_cores = $5, \
         role = $6, os_type = $7, status = $8, health = $9, boot_profile_id = $10, \
         netboot = $11, updated_at = $12 WHERE id = $13",
    )
    .bind(f.cluster_id)
    .bind(f.hostname.clone())
    .bind(f.ip.map(|ip| ip.to_string()))
    .bind(f.mac.to_string())
    .bind(i64::from(f.cpu_cores))
    .bind(f.role.as_str())
    .bind(f.os_type.as_str())
    .bind(f.status.as_str())
    .bind(f.health.as_str())
    .bind(f.boot_profile_id)
    .bind(i64::from(f.netboot))
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("machine {id}")));
    }
    events::link_to_machine(&mut *conn, id, f.mac).await?;
    Ok(())
}

/// Sets machine `id`'s status (e.g. `ACTIVE` when it phones home). Returns whether it exists.
///
/// # Errors
/// The store failed.
pub async fn set_status<'c, E: Executor<'c, Database = Any>>(
    e: E,
    id: i64,
    status: MachineStatus,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE machines SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(e)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes machine `id` (its metrics and events go with it). Returns whether it existed.
///
/// # Errors
/// The store failed.
pub async fn delete<'c, E: Executor<'c, Database = Any>>(
    e: E,
    id: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM machines WHERE id = $1")
        .bind(id)
        .execute(e)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A machine's resource usage, as an edge or an admin reports it (the original design's
/// ResourceMetrics). Sizes in GB, network in Mbps, `*_usage` in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// CPU usage, percent (0–100).
    pub cpu_usage: f64,
    /// CPU cores.
    pub cpu_cores: u32,
    /// Memory in use, GB.
    pub memory_used: f64,
    /// Memory installed, GB.
    pub memory_total: f64,
    /// Memory usage, percent (0–100).
    pub memory_usage: f64,
    /// Disk in use, GB.
    pub disk_used: f64,
    /// Disk capacity, GB.
    pub disk_total: f64,
    /// Disk usage, percent (0–100).
    pub disk_usage: f64,
    /// Incoming traffic, Mbps.
    pub network_incoming: f64,
    /// Outgoing traffic, Mbps.
    pub network_outgoing: f64,
}

impl Metrics {
    /// The fields as `(name, value, is_percentage)`, in the API's order (without `cpu_cores`).
    #[must_use]
    pub const fn float_fields(&self) -> [(&'static str, f64, bool); 9] {
        [
            ("cpu_usage", self.cpu_usage, true),
            ("memory_used", self.memory_used, false),
            ("memory_total", self.memory_total, false),
            ("memory_usage", self.memory_usage, true),
            ("disk_used", self.disk_used, false),
            ("disk_total", self.disk_total, false),
            ("disk_usage", self.disk_usage, true),
            ("network_incoming", self.network_incoming, false),
            ("network_outgoing", self.network_outgoing, false),
        ]
    }

    /// Every invalid field: numbers must be finite and non-negative, percentages at most 100,
    /// `cpu_cores` at most [`MAX_CPU_CORES`].
    #[must_use]
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, value, percent) in self.float_fields() {
            if !value.is_finite() || value < 0.0 {
                errors.push(FieldError::new(
                    name,
                    format!("{value} is not allowed: give a finite number of 0 or more"),
                ));
            } else if percent && value > 100.0 {
                errors.push(FieldError::new(
                    name,
                    format!("{value} is not a percentage: give a number from 0 to 100"),
                ));
            }
        }
        if self.cpu_cores > MAX_CPU_CORES {
            errors.push(FieldError::new(
                "cpu_cores",
                format!("give a whole number from 0 to {MAX_CPU_CORES}"),
            ));
        }
        errors
    }
}

/// The latest metrics of a machine and when they were stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineMetrics {
    /// The machine.
    pub machine_id: i64,
    /// The values.
    pub metrics: Metrics,
    /// When they were stored (Unix ms).
    pub timestamp: i64,
}

/// Stores `m` as machine `machine_id`'s latest metrics (insert or replace), stamped `now`.
/// Callers validate first ([`Metrics::validate`]).
///
/// # Errors
/// No such machine (`NotFound`), or the store failed.
pub async fn upsert_metrics(
    conn: &mut AnyConnection,
    machine_id: i64,
    m: &Metrics,
    now: i64,
) -> Result<(), StoreError> {
    let exists = sqlx::query("SELECT 1 FROM machines WHERE id = $1")
        .bind(machine_id)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("machine {machine_id}")));
    }
    sqlx::query(
        "INSERT INTO machine_metrics (machine_id, cpu_usage, cpu_cores, memory_used, \
         memory_total, memory_usage, disk_used, disk_total, disk_usage, network_incoming, \
         network_outgoing, timestamp) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (machine_id) DO UPDATE SET cpu_usage = excluded.cpu_usage, \
         cpu_cores = excluded.cpu_cores, memory_used = excluded.memory_used, \
         memory_total = excluded.memory_total, memory_usage = excluded.memory_usage, \
         disk_used = excluded.disk_used, disk_total = excluded.disk_total, \
         disk_usage = excluded.disk_usage, network_incoming = excluded.network_incoming, \
         network_outgoing = excluded.network_outgoing, timestamp = excluded.timestamp",
    )
    .bind(machine_id)
    .bind(m.cpu_usage)
    .bind(i64::from(m.cpu_cores))
    .bind(m.memory_used)
    .bind(m.memory_total)
    .bind(m.memory_usage)
    .bind(m.disk_used)
    .bind(m.disk_total)
    .bind(m.disk_usage)
    .bind(m.network_incoming)
    .bind(m.network_outgoing)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Machine `machine_id`'s latest metrics, if any were reported.
///
/// # Errors
/// The store failed.
pub async fn get_metrics<'c, E: Executor<'c, Database = Any>>(
    e: E,
    machine_id: i64,
) -> Result<Option<MachineMetrics>, StoreError> {
    let row = sqlx::query(
        "SELECT cpu_usage, cpu_cores, memory_used, memory_total, memory_usage, disk_used, \
         disk_total, disk_usage, network_incoming, network_outgoing, timestamp \
         FROM machine_metrics WHERE machine_id = $1",
    )
    .bind(machine_id)
    .fetch_optional(e)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let cpu_cores: i64 = row.try_get(1)?;
    Ok(Some(MachineMetrics {
        machine_id,
        metrics: Metrics {
            cpu_usage: row.try_get(0)?,
            cpu_cores: u32::try_from(cpu_cores).map_err(decode_err)?,
            memory_used: row.try_get(2)?,
            memory_total: row.try_get(3)?,
            memory_usage: row.try_get(4)?,
            disk_used: row.try_get(5)?,
            disk_total: row.try_get(6)?,
            disk_usage: row.try_get(7)?,
            network_incoming: row.try_get(8)?,
            network_outgoing: row.try_get(9)?,
        },
        timestamp: row.try_get(10)?,
    }))
}
