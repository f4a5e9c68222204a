//! Raw serde types mirroring the TOML file, key for key. Unknown keys are refused
//! (`deny_unknown_fields`); syntax and type errors carry toml's line and column. Nothing here is
//! checked beyond its type: [`super::Config`]'s `TryFrom` does that.
//!
//! Each array-of-tables entry is [`Spanned`] so validation errors can name its line.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory of the LMDB store (default `/var/lib/netbootd`).
    pub data_dir: Option<String>,
    /// `host:port` of the metrics listener (default `127.0.0.1:9464`); `""` or `"off"` disables it.
    pub metrics_listen: Option<String>,
    /// `"text"` (default) or `"json"`.
    pub log_format: Option<RawLogFormat>,
    /// Unprivileged user to switch to once every socket is open (when started as root).
    pub user: Option<String>,
    /// `[dhcp]` tuning.
    pub dhcp: Option<RawDhcp>,
    /// `[[interface]]` entries.
    #[serde(default)]
    pub interface: Vec<Spanned<RawInterface>>,
    /// `[[subnet]]` entries.
    #[serde(default)]
    pub subnet: Vec<Spanned<RawSubnet>>,
    /// `[[boot_profile]]` entries.
    #[serde(default)]
    pub boot_profile: Vec<Spanned<RawBootProfile>>,
    /// `[[machine]]` entries.
    #[serde(default)]
    pub machine: Vec<Spanned<RawMachine>>,
    /// `[tftp]`: the TFTP server; absent means no TFTP.
    pub tftp: Option<Spanned<RawTftp>>,
    /// `[http]`: the HTTP boot server; absent means no HTTP.
    pub http: Option<Spanned<RawHttp>>,
    /// `[control]`: the control plane this edge reports to; absent means standalone.
    pub control: Option<Spanned<RawControl>>,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[dhcp]`: all keys optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcp {
    /// How long an offered address stays reserved (default 60 s).
    pub offer_timeout: Option<RawDuration>,
    /// How long a declined address is quarantined (default 10 min).
    pub decline_quarantine: Option<RawDuration>,
    /// Rate limit of "unknown MAC" log lines (default 10 per minute).
    pub unknown_log_per_minute: Option<u32>,
    /// Most lease writes grouped into one commit (default 1024).
    pub max_batch: Option<usize>,
    /// Messages per second each client MAC may send, sustained (default 2; 0 = no limit).
    pub rate_limit_per_mac: Option<u32>,
    /// Messages a client MAC may send at once after a quiet period (default 20).
    pub rate_limit_burst: Option<u32>,
}

/// `[[interface]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    /// Kernel interface name.
    pub name: String,
    /// Our IPv4 address on it.
    pub address: Ipv4Addr,
}

/// `[[subnet]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    /// Network in CIDR notation, such as `10.77.0.0/24`.
    pub cidr: String,
    /// Default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Domain name.
    pub domain: Option<String>,
    /// Lease time (default 1 h, at least 60 s).
    pub lease_time: Option<RawDuration>,
    /// Dynamic range `[first, last]`, inclusive.
    pub range: Option<[Ipv4Addr; 2]>,
    /// Addresses (`"10.77.0.150"`) or inclusive ranges (`"10.77.0.160-10.77.0.170"`) never handed
    /// out dynamically.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Discovery mode: answer unknown MACs from the range, without a boot file.
    #[serde(default)]
    pub allow_unknown: bool,
    /// Boot profile of machines that name none.
    pub boot_profile: Option<String>,
    /// TFTP server when not this daemon.
    pub next_server: Option<Ipv4Addr>,
}

/// `[[boot_profile]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBootProfile {
    /// Profile name, referenced by subnets and machines.
    pub name: String,
    /// Legacy BIOS PXE boot file.
    pub bios: Option<String>,
    /// UEFI x64 PXE boot file.
    pub uefi_x64: Option<String>,
    /// UEFI arm64 PXE boot file.
    pub uefi_arm64: Option<String>,
    /// UEFI HTTP boot URL.
    pub http: Option<String>,
    /// UEFI arm64 HTTP boot URL.
    pub http_arm64: Option<String>,
    /// What iPXE gets: the next stage, usually a script URL.
    pub ipxe_script: Option<String>,
    /// Kernel for the per-machine iPXE script: a path under the root or a URL.
    pub kernel: Option<String>,
    /// Initrd for the per-machine iPXE script: a path under the root or a URL.
    pub initrd: Option<String>,
    /// Kernel command line; `{hostname}`, `{ip}`, `{mac}` and `{phone_home}` are substituted.
    pub cmdline: Option<String>,
}

/// `[tftp]`. Only `root` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTftp {
    /// Directory served; nothing outside it is read. Must exist when the daemon starts.
    pub root: Option<String>,
    /// `host:port` to listen on (default `0.0.0.0:69`).
    pub listen: Option<String>,
    /// Largest `blksize` granted, 8–65464 (default: fitted to the MTU of the interface holding
    /// `listen`, 1468 on a 1500-byte Ethernet).
    pub max_blksize: Option<u16>,
    /// Largest `windowsize` granted, 1–65535 (default 64).
    pub max_windowsize: Option<u16>,
    /// Transfers running at once (default 256).
    pub max_transfers: Option<usize>,
    /// Requests waiting for a free slot before "server busy" (default 4 × `max_transfers`).
    pub max_queue: Option<usize>,
    /// Retransmission timeout when the client asks for none (default 1 s).
    pub timeout: Option<RawDuration>,
    /// Retransmissions of one window before a transfer fails (default 5).
    pub max_retries: Option<u32>,
    /// `"auto"` (default), `"uring"` or `"tokio"`; env `NETBOOTD_TFTP_DRIVER` overrides.
    pub driver: Option<RawTftpDriver>,
    /// Read requests per second each client IP address may send, sustained (default 10;
    /// 0 = no limit).
    pub rate_limit_per_ip: Option<u32>,
    /// Read requests a client IP address may send at once after a quiet period (default 50).
    pub rate_limit_burst: Option<u32>,
}

/// `[tftp] driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTftpDriver {
    /// io_uring when the kernel allows it, else plain tokio.
    Auto,
    /// io_uring only.
    Uring,
    /// Plain tokio sockets.
    Tokio,
}

/// `[http]`. Only `listen` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `host:port` to listen on, such as `0.0.0.0:8080`.
    pub listen: Option<String>,
    /// Directory served (default: the `[tftp] root`; required without `[tftp]`).
    pub root: Option<String>,
    /// Base URL machines reach this server at (default `http://<listen>`, with the first
    /// `[[interface]]` address when `listen` is a wildcard).
    pub public_url: Option<String>,
    /// Concurrent file downloads (default 256); further requests wait.
    pub max_downloads: Option<usize>,
}

/// `[control]`. Only `endpoint` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// `HOST:PORT` of the control plane's QUIC listener (`ims-control serve --quic-listen`),
    /// such as `control.example.net:7443` or `[fd00::1]:7443`.
    pub endpoint: Option<String>,
    /// Name the control plane's certificate is checked against (default `ims-control`).
    pub server_name: Option<String>,
    /// Most events kept in the outbox while the control plane is unreachable (default 100000);
    /// beyond it the oldest lease renewals are dropped first, never a phone-home.
    pub max_outbox: Option<u64>,
}

/// `[[machine]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMachine {
    /// Hardware address, such as `52:54:00:00:00:01`.
    pub mac: String,
    /// Reserved address; omitted for the dynamic range.
    pub ip: Option<Ipv4Addr>,
    /// Hostname handed to the machine.
    pub hostname: String,
    /// Boot profile overriding the subnet's.
    pub boot_profile: Option<String>,
    /// Whether the machine gets a boot file (default true).
    pub netboot: Option<bool>,
}

/// A duration: a humantime string (`"90s"`, `"10m"`, `"1h 30m"`) or integer seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = RawDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"90s\", \"10m\", \"1h\", or whole seconds")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<RawDuration, E> {
        Ok(RawDuration(Duration::from_secs(secs)))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<RawDuration, E> {
        u64::try_from(secs)
            .map(|secs| RawDuration(Duration::from_secs(secs)))
            .map_err(|_| {
                E::custom(format!(
                    "negative duration {secs}: give a number of seconds ≥ 0"
                ))
            })
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
        humantime::parse_duration(s.trim())
            .map(RawDuration)
            .map_err(|e| {
                E::custom(format!(
                    "invalid duration {s:?} ({e}): use a form such as \"90s\", \"10m\", \"1h\", \
                     or whole seconds"
                ))
            })
    }
}
