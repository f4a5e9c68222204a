//! `netbootd`'s offline commands: `leases`, `discovered`, `events` (reading the LMDB store of a
//! stopped or running daemon) and `check-config`, with their table and JSON output.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use ims_netboot::config::{Config, TftpDriver};
use ims_netboot::dhcp::{Lease, LeaseState, UnixTime};
use ims_netboot::io::tftp;
use ims_netboot::io::uplink::identity::{self, IdentityError};
use ims_netboot::store::LeaseStore;
use ims_netboot::store::lmdb::LmdbStore;

use super::tftp_driver_requested;

/// RFC 3339 UTC, whole seconds.
pub(crate) fn rfc3339(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.0)).to_string()
}

fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Bound => "bound",
        LeaseState::Released => "released",
        LeaseState::Expired => "expired",
        LeaseState::Declined => "declined",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One lease as `leases --json` prints it.
#[derive(Debug, serde::Serialize)]
struct LeaseJson<'a> {
    ip: String,
    mac: String,
    state: &'static str,
    hostname: Option<&'a str>,
    starts: String,
    ends: String,
    boot_file: Option<&'a str>,
    next_server: Option<String>,
    arch: Option<u16>,
    client_id: Option<String>,
    uuid: Option<String>,
}

impl<'a> From<&'a Lease> for LeaseJson<'a> {
    fn from(l: &'a Lease) -> Self {
        Self {
            ip: l.ip.to_string(),
            mac: l.mac.to_string(),
            state: state_name(l.state),
            hostname: l.hostname.as_deref(),
            starts: rfc3339(l.starts),
            ends: rfc3339(l.ends),
            boot_file: l.boot_file.as_deref(),
            next_server: l.next_server.map(|ip| ip.to_string()),
            arch: l.arch,
            client_id: l.client_id.as_deref().map(hex),
            uuid: l.uuid.as_deref().map(hex),
        }
    }
}

pub(crate) fn list_leases(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = LmdbStore::open_read_only(&config.data_dir)?;
    let mut leases = store.load_leases()?;
    leases.sort_by_key(|l| l.ip);
    let mut out = io::stdout().lock();
    if json {
        let views: Vec<LeaseJson<'_>> = leases.iter().map(LeaseJson::from).collect();
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &leases)?;
    }
    out.flush()?;
    Ok(())
}

fn write_table(out: &mut impl Write, leases: &[Lease]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.ip.to_string(),
                l.mac.to_string(),
                state_name(l.state).to_owned(),
                l.hostname.clone().unwrap_or_else(|| "-".into()),
                rfc3339(l.starts),
                rfc3339(l.ends),
                l.boot_file.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "IP",
        "MAC",
        "STATE",
        "HOSTNAME",
        "STARTS",
        "ENDS",
        "BOOT FILE",
    ];
    write_columns(out, &header, &rows)
}

pub(crate) fn list_events(config: &Config, json: bool, after: u64) -> anyhow::Result<()> {
    let store = LmdbStore::open_read_only(&config.data_dir)?;
    let events = store.event_log()?.list(after, usize::MAX)?;
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &events)?;
        writeln!(out)?;
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let detail = serde_json::to_value(&e.kind)
                    .ok()
                    .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
                    .map_or_else(String::new, |v| v.to_string());
                vec![
                    e.seq.to_string(),
                    rfc3339(e.at),
                    e.kind.name().to_owned(),
                    detail,
                ]
            })
            .collect();
        write_columns(&mut out, &["SEQ", "TIME", "EVENT", "DETAIL"], &rows)?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn list_discovered(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = LmdbStore::open_read_only(&config.data_dir)?;
    let mut machines = store.load_discovered()?;
    machines.sort_by_key(|m| m.mac);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &machines)?;
        writeln!(out)?;
    } else {
        let rows: Vec<Vec<String>> = machines
            .iter()
            .map(|m| {
                vec![
                    m.mac.to_string(),
                    m.ip.to_string(),
                    m.arch.map_or_else(|| "-".into(), |a| a.to_string()),
                    m.vendor_class.clone().unwrap_or_else(|| "-".into()),
                    m.hostname.clone().unwrap_or_else(|| "-".into()),
                    rfc3339(m.first_seen),
                    rfc3339(m.last_seen),
                ]
            })
            .collect();
        let header = [
            "MAC",
            "IP",
            "ARCH",
            "VENDOR CLASS",
            "HOSTNAME",
            "FIRST SEEN",
            "LAST SEEN",
        ];
        write_columns(&mut out, &header, &rows)?;
    }
    out.flush()?;
    Ok(())
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_columns(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

pub(crate) fn check_config(path: &Path, config: &Config) -> anyhow::Result<()> {
    let dhcp = &config.dhcp;
    let mut out = io::stdout().lock();
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "data_dir: {}", config.data_dir.display())?;
    match config.metrics_listen {
        Some(addr) => writeln!(out, "metrics: http://{addr}/metrics")?,
        None => writeln!(out, "metrics: disabled")?,
    }
    writeln!(out, "interfaces: {}", dhcp.interfaces.len())?;
    for i in &dhcp.interfaces {
        writeln!(out, "  {} ({})", i.name, i.address)?;
    }
    writeln!(out, "subnets: {}", dhcp.subnets.len())?;
    for s in &dhcp.subnets {
        let range = s
            .range
            .map(|(a, b)| format!("range {a}-{b}"))
            .unwrap_or_else(|| "no dynamic range".into());
        let mode = if s.allow_unknown {
            ", discovery mode"
        } else {
            ""
        };
        writeln!(
            out,
            "  {} ({range}, lease {} s{mode})",
            s.cidr, s.lease_time
        )?;
    }
    let scripts = dhcp
        .boot_profiles
        .values()
        .filter(|p| p.kernel.is_some())
        .count();
    writeln!(
        out,
        "boot profiles: {} ({scripts} with an iPXE kernel)",
        dhcp.boot_profiles.len()
    )?;
    writeln!(out, "machines: {}", dhcp.machines.len())?;
    match &config.tftp {
        Some(t) => {
            let (blksize, source) = tftp::effective_max_blksize(t);
            let requested = tftp_driver_requested(t)?;
            let choice = tftp::select_driver(requested, tftp::probe_uring);
            let driver = match &choice.uring_refused {
                None => choice.kind.as_str().to_owned(),
                Some(why) => format!("{} (io_uring unavailable: {why})", choice.kind.as_str()),
            };
            let requested = match requested {
                TftpDriver::Auto => "auto",
                TftpDriver::Uring => "uring",
                TftpDriver::Tokio => "tokio",
            };
            writeln!(out, "tftp: {} (root {})", t.listen, t.root.display())?;
            writeln!(out, "  driver: {requested} -> {driver}")?;
            writeln!(out, "  max_blksize: {blksize} ({source})")?;
            writeln!(
                out,
                "  max_windowsize {}, max_transfers {}, max_queue {}, timeout {}, max_retries {}",
                t.max_windowsize,
                t.max_transfers,
                t.max_queue,
                humantime::format_duration(t.timeout),
                t.max_retries
            )?;
        }
        None => writeln!(out, "tftp: disabled")?,
    }
    match &config.http {
        Some(h) => {
            writeln!(out, "http: {} (root {})", h.listen, h.root.display())?;
            writeln!(
                out,
                "  public_url {}, max_downloads {}",
                h.public_url, h.max_downloads
            )?;
        }
        None => writeln!(out, "http: disabled")?,
    }
    match &config.control {
        Some(c) => {
            let enrolled = match identity::load(&config.data_dir) {
                Ok(i) => format!("enrolled as {} (site {})", i.info.worker_id, i.info.site),
                Err(IdentityError::NotEnrolled(_)) => {
                    "NOT enrolled: run `netbootd enroll` before starting".to_owned()
                }
                Err(e) => format!("identity unusable: {e}"),
            };
            writeln!(
                out,
                "control: {} (server name {}, max_outbox {}), {enrolled}",
                c.endpoint, c.server_name, c.max_outbox
            )?;
        }
        None => writeln!(out, "control: none (standalone)")?,
    }
    if dhcp.interfaces.is_empty() && dhcp.subnets.is_empty() {
        let note = if config.tftp.is_some() {
            "note: no [[interface]] and no [[subnet]]: DHCP will not run (a TFTP-only edge)"
        } else {
            "note: no [[interface]] and no [[subnet]]: DHCP will not run"
        };
        writeln!(out, "{note}")?;
    }
    out.flush()?;
    Ok(())
}
