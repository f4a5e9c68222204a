//! The `netbootd` configuration file (TOML).
//!
//! Two layers: raw serde types mirroring the file (`deny_unknown_fields`) and the validated types
//! below, built with `TryFrom`, which are all the rest of the daemon ever sees.
//!
//! CONTRACT (filled in by the config task): `Config::load(path)` and `Config::from_toml_str(s)`
//! return a [`ConfigError`] naming the key and the problem.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ims_proto::MacAddr;
use ipnet::Ipv4Net;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory holding the LMDB store.
    pub data_dir: PathBuf,
    /// Where `/metrics` and `/healthz` are served; `None` disables the listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Log output.
    pub log_format: LogFormat,
    /// Everything the DHCP core needs.
    pub dhcp: DhcpConfig,
    /// Driver tuning for DHCP.
    pub dhcp_driver: DhcpDriverConfig,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The DHCP core's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpConfig {
    /// Interfaces served directly; the index is the [`crate::dhcp::InterfaceId`].
    pub interfaces: Vec<Interface>,
    /// Subnets, in file order.
    pub subnets: Vec<Subnet>,
    /// Boot profiles by name.
    pub boot_profiles: BTreeMap<String, BootProfile>,
    /// Registered machines by MAC.
    pub machines: BTreeMap<MacAddr, Machine>,
    /// How long an offered address stays reserved for the client that was offered it (seconds).
    pub offer_timeout: u64,
    /// How long a declined address is quarantined (seconds).
    pub decline_quarantine: u64,
    /// At most this many "unknown MAC" log lines per minute.
    pub unknown_log_per_minute: u32,
}

/// A `[[interface]]`: a link served with raw sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface name.
    pub name: String,
    /// Our IPv4 address there: server identifier and next-server.
    pub address: Ipv4Addr,
}

/// A `[[subnet]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Network and prefix.
    pub cidr: Ipv4Net,
    /// Default gateway (option 3).
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// Lease time in seconds (option 51).
    pub lease_time: u32,
    /// Dynamic range, inclusive, inside `cidr`.
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Addresses never handed out dynamically, as inclusive ranges.
    pub exclude: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Discovery mode: unknown MACs get a dynamic address and no boot file.
    pub allow_unknown: bool,
    /// Boot profile of machines that name none (default: the profile called "default").
    pub boot_profile: Option<String>,
    /// Next server (TFTP) when not this daemon.
    pub next_server: Option<Ipv4Addr>,
}

/// A `[[boot_profile]]`: the boot file for each firmware type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootProfile {
    /// Profile name.
    pub name: String,
    /// Legacy BIOS PXE (arch 0).
    pub bios: Option<String>,
    /// UEFI x64 PXE (arch 7, 9).
    pub uefi_x64: Option<String>,
    /// UEFI arm64 PXE (arch 11).
    pub uefi_arm64: Option<String>,
    /// UEFI HTTP boot URL (arch 16, and 19 when `http_arm64` is unset).
    pub http: Option<String>,
    /// UEFI arm64 HTTP boot URL (arch 19).
    pub http_arm64: Option<String>,
    /// What iPXE (user class `iPXE`) gets: the next stage, usually a script URL.
    pub ipxe_script: Option<String>,
}

/// A `[[machine]]`: a registered MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Hardware address.
    pub mac: MacAddr,
    /// Reserved address; `None` means the subnet's dynamic range.
    pub ip: Option<Ipv4Addr>,
    /// Hostname (option 12).
    pub hostname: String,
    /// Boot profile overriding the subnet's.
    pub boot_profile: Option<String>,
    /// Whether the machine gets a boot file (false once installed: boot once).
    pub netboot: bool,
}

/// DHCP driver tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpDriverConfig {
    /// Most lease writes grouped into one LMDB commit.
    pub max_batch: usize,
}

impl Default for DhcpDriverConfig {
    fn default() -> Self {
        Self { max_batch: 1024 }
    }
}
