//! The `netbootd` configuration file (TOML).
//!
//! Two layers: raw serde types mirroring the file ([`raw`], `deny_unknown_fields`) and the
//! validated types below, built with `TryFrom`, which are all the rest of the daemon ever sees.
//! [`Config::load`] and [`Config::from_toml_str`] do both steps and return a [`ConfigError`]
//! naming the file, the line, the key path (`subnet[0].range`,
//! `machine[3] (52:54:00:00:00:01).ip`) and what to do about it.
//!
//! Every section is optional. With no `[[interface]]` no DHCP runs on raw sockets (relayed
//! requests are still answered for the configured subnets); `[tftp]` and `[http]` start the
//! boot-file services, and a file with only `[tftp]` is a TFTP-only edge. Parsing never touches
//! the filesystem: [`Config::check_filesystem`] checks the roots on the machine that runs the
//! daemon. The commented example in
//! `deploy/examples/netbootd.toml` documents every key; [`raw`] documents defaults and units.
//! Durations are humantime strings (`"90s"`, `"10m"`, `"1h"`) or integer seconds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ims_proto::MacAddr;
use ipnet::Ipv4Net;

use crate::ratelimit::RateLimit;

mod control;
pub mod raw;
mod services;
mod validate;

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

pub use control::{Endpoint, parse_endpoint};
pub use services::CMDLINE_PLACEHOLDERS;
pub(crate) use validate::check_boot_profile;
pub use validate::is_valid_hostname;

/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/netbootd";
/// Default `metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Default `[dhcp] offer_timeout`, in seconds.
pub const DEFAULT_OFFER_TIMEOUT: u64 = 60;
/// Default `[dhcp] decline_quarantine`, in seconds.
pub const DEFAULT_DECLINE_QUARANTINE: u64 = 600;
/// Default `[dhcp] unknown_log_per_minute`.
pub const DEFAULT_UNKNOWN_LOG_PER_MINUTE: u32 = 10;
/// Default `[dhcp] max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Default `[dhcp] rate_limit_per_mac` and `rate_limit_burst`: 2 messages a second per MAC
/// after a burst of 20. A PXE boot sends about a dozen messages over a minute (firmware
/// DISCOVER retries, then iPXE's and the OS's DORA), never 20 at once.
pub const DEFAULT_DHCP_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 2,
    burst: 20,
};
/// Default `[tftp] rate_limit_per_ip` and `rate_limit_burst`: 10 read requests a second per
/// client address after a burst of 50 (pxelinux probes a dozen config names at once; firmware
/// probes `tsize` first and retransmits requests).
pub const DEFAULT_TFTP_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 10,
    burst: 50,
};
/// Default `[[subnet]] lease_time`, in seconds.
pub const DEFAULT_LEASE_TIME: u32 = 3600;
/// Shortest accepted `lease_time`, in seconds.
pub const MIN_LEASE_TIME: u32 = 60;
/// Default `[tftp] listen`.
pub const DEFAULT_TFTP_LISTEN: &str = "0.0.0.0:69";
/// Default `[tftp] max_windowsize`.
pub const DEFAULT_TFTP_MAX_WINDOWSIZE: u16 = 64;
/// Default `[tftp] max_transfers` (`max_queue` defaults to four times this).
pub const DEFAULT_TFTP_MAX_TRANSFERS: usize = 256;
/// Default `[tftp] timeout`.
pub const DEFAULT_TFTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Default `[tftp] max_retries`.
pub const DEFAULT_TFTP_MAX_RETRIES: u32 = 5;
/// Default `[http] max_downloads`.
pub const DEFAULT_HTTP_MAX_DOWNLOADS: usize = 256;
/// Default `[control] server_name`: the name every control-plane certificate carries.
pub const DEFAULT_CONTROL_SERVER_NAME: &str = "ims-control";
/// Default `[control] max_outbox`.
pub const DEFAULT_MAX_OUTBOX: u64 = 100_000;
/// Smallest accepted `[control] max_outbox`.
pub const MIN_MAX_OUTBOX: u64 = 100;
/// Environment variable overriding `[tftp] driver` (`auto`, `uring` or `tokio`).
pub const TFTP_DRIVER_ENV: &str = "NETBOOTD_TFTP_DRIVER";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}: check the --config path", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, a value of the wrong type, a missing or an unknown key. `message` is
    /// toml's, with the line, column and offending line.
    #[error("{file}: {message}")]
    Parse {
        /// The file (`config` when parsed from a string).
        file: String,
        /// toml's message.
        message: String,
    },
    /// A well-formed value the daemon cannot accept.
    #[error("{file}{}: {key} {problem}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file (`config` when parsed from a string).
        file: String,
        /// 1-based line of the table (or key) at fault, when known.
        line: Option<usize>,
        /// Key path, such as `subnet[0].range` or `machine[3] (52:54:00:00:00:01).ip`.
        key: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl ConfigError {
    /// The key path of an [`ConfigError::Invalid`] error.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A validation failure before the file name and line are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) key: String,
    pub(crate) problem: String,
    /// Byte range in the file of the table or value at fault.
    pub(crate) span: Option<Range<usize>>,
}

impl Invalid {
    fn into_error(self, file: &str, input: Option<&str>) -> ConfigError {
        let line = match (self.span, input) {
            (Some(span), Some(input)) => Some(line_of(input, span.start)),
            _ => None,
        };
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            key: self.key,
            problem: self.problem,
        }
    }
}

/// 1-based line of byte offset `at` in `input`.
fn line_of(input: &str, at: usize) -> usize {
    let at = at.min(input.len());
    input.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// File name used in errors for configurations parsed from a string.
const STRING_SOURCE: &str = "config";

impl Config {
    /// Read, parse and validate the file at `path`.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML for this schema, or fails validation;
    /// the error names the file, line and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate a configuration held in a string.
    ///
    /// # Errors
    /// As [`Config::load`], with the file called `config`.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(s, STRING_SOURCE)
    }

    fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        validate::validate(raw).map_err(|e| e.into_error(file, Some(text)))
    }
}

impl Config {
    /// Check what the file names on this machine: the `[tftp]` and `[http]` roots must be
    /// existing directories. Not part of [`Config::load`], so a file can be parsed and checked
    /// anywhere (tests, CI, another host); the daemon calls this at start and `check-config`
    /// reports it too. `file` names the configuration in the error.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key (`tftp.root`, `http.root`) and the problem.
    pub fn check_filesystem(&self, file: &str) -> Result<(), ConfigError> {
        let roots = [
            ("tftp.root", self.tftp.as_ref().map(|t| &t.root)),
            ("http.root", self.http.as_ref().map(|h| &h.root)),
        ];
        for (key, root) in roots {
            let Some(root) = root else { continue };
            let problem = match std::fs::metadata(root) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => format!(
                    "{} is not a directory: point it at the boot file directory",
                    root.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "{} does not exist: create it and put the boot files there, or fix the path",
                    root.display()
                ),
                Err(e) => format!(
                    "{} cannot be read ({e}): check its permissions",
                    root.display()
                ),
            };
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                line: None,
                key: key.to_owned(),
                problem,
            });
        }
        Ok(())
    }
}

impl TryFrom<raw::RawConfig> for Config {
    type Error = ConfigError;

    /// Validate raw file contents (without a file name or line numbers in errors).
    fn try_from(raw: raw::RawConfig) -> Result<Self, Self::Error> {
        validate::validate(raw).map_err(|e| e.into_error(STRING_SOURCE, None))
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory holding the LMDB store.
    pub data_dir: PathBuf,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` disables the listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Log output.
    pub log_format: LogFormat,
    /// The user to switch to after binding when started as root (`user`; see
    /// `io::privileges`); `None` keeps root.
    pub user: Option<String>,
    /// Everything the DHCP core needs.
    pub dhcp: DhcpConfig,
    /// Driver tuning for DHCP.
    pub dhcp_driver: DhcpDriverConfig,
    /// The TFTP server (`[tftp]`); `None` when the section is absent.
    pub tftp: Option<TftpConfig>,
    /// The HTTP boot server (`[http]`); `None` when the section is absent.
    pub http: Option<HttpConfig>,
    /// The control plane (`[control]`); `None` when the edge runs standalone.
    pub control: Option<ControlConfig>,
}

/// `[control]`: the control plane this edge reports to over the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Where its QUIC listener is.
    pub endpoint: Endpoint,
    /// Name its certificate must carry (default [`DEFAULT_CONTROL_SERVER_NAME`]).
    pub server_name: String,
    /// Most events kept in the outbox (default [`DEFAULT_MAX_OUTBOX`]).
    pub max_outbox: u64,
}

/// Which TFTP driver runs the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TftpDriver {
    /// Plain tokio: it measured cheaper per byte than io_uring (see `io::tftp`).
    #[default]
    Auto,
    /// io_uring only; fail at start if it is refused.
    Uring,
    /// Plain tokio sockets.
    Tokio,
}

/// `[tftp]`: the TFTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpConfig {
    /// Directory served (also over HTTP); nothing outside it is ever read.
    pub root: PathBuf,
    /// Listening address (port 69).
    pub listen: SocketAddr,
    /// Largest blksize granted; `None` fits it to the MTU of the interface holding `listen`.
    pub max_blksize: Option<u16>,
    /// Largest windowsize granted (default 64).
    pub max_windowsize: u16,
    /// Transfers running at once (default 256).
    pub max_transfers: usize,
    /// Requests waiting for a slot before "server busy" (default 4 × max_transfers).
    pub max_queue: usize,
    /// Retransmission timeout when the client asks for none (default 1 s).
    pub timeout: std::time::Duration,
    /// Retransmissions before a transfer fails (default 5).
    pub max_retries: u32,
    /// Driver selection (default auto; env `NETBOOTD_TFTP_DRIVER` overrides).
    pub driver: TftpDriver,
    /// Read requests per client IP address (default [`DEFAULT_TFTP_RATE_LIMIT`]).
    pub rate_limit_per_ip: RateLimit,
}

/// `[http]`: the HTTP boot server (same root as TFTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Listening address.
    pub listen: SocketAddr,
    /// Directory served (the `[tftp] root`, or `[http] root` when there is no `[tftp]`).
    pub root: PathBuf,
    /// Base URL machines use to reach this server (default `http://<listen>`), used in iPXE
    /// scripts and the phone-home URL.
    pub public_url: String,
    /// Concurrent HTTP file downloads (default 256); further requests wait.
    pub max_downloads: usize,
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
    /// Kernel for the per-machine iPXE script (a path under the root or a URL).
    pub kernel: Option<String>,
    /// Initrd for the per-machine iPXE script (a path under the root or a URL).
    pub initrd: Option<String>,
    /// Kernel command line; `{hostname}`, `{ip}`, `{mac}`, `{phone_home}` are substituted.
    pub cmdline: Option<String>,
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
    /// Messages per client MAC (default [`DEFAULT_DHCP_RATE_LIMIT`]).
    pub rate_limit_per_mac: RateLimit,
}

impl Default for Config {
    /// What an empty file gives: no interfaces, subnets or machines, and every default.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            log_format: LogFormat::Text,
            user: None,
            dhcp: DhcpConfig {
                offer_timeout: DEFAULT_OFFER_TIMEOUT,
                decline_quarantine: DEFAULT_DECLINE_QUARANTINE,
                unknown_log_per_minute: DEFAULT_UNKNOWN_LOG_PER_MINUTE,
                ..DhcpConfig::default()
            },
            dhcp_driver: DhcpDriverConfig::default(),
            tftp: None,
            http: None,
            control: None,
        }
    }
}

impl Default for DhcpDriverConfig {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            rate_limit_per_mac: DEFAULT_DHCP_RATE_LIMIT,
        }
    }
}
