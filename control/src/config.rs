//! Settings of `ims-control`: a TOML file (`--config`, every key optional, unknown keys refused)
//! overlaid by flags and environment variables, which win. [`ConfigSources`] holds both layers
//! and builds the validated [`ServeConfig`] (for `serve`) or just the [`StoreLocation`] (for the
//! admin subcommands). Errors name the flag and variable, or the key and the file, that hold
//! the bad value. `deploy/examples/ims-control.toml` documents every key.
//!
//! | key | flag | variable | default |
//! | --- | --- | --- | --- |
//! | `listen` | `--listen` | `IMS_LISTEN` | `127.0.0.1:8000` |
//! | `data_dir` | `--data-dir` | `IMS_DATA_DIR` | `/var/lib/ims-control` |
//! | `database` | `--database` | `IMS_DATABASE_URL` | SQLite `ims-control.db` in `data_dir` |
//! | `tls_cert`, `tls_key` | `--tls-cert`, `--tls-key` | `IMS_TLS_CERT`, `IMS_TLS_KEY` | plain HTTP |
//! | `access_ttl` | `--access-ttl` | `IMS_ACCESS_TTL` | `15m` |
//! | `refresh_ttl` | `--refresh-ttl` | `IMS_REFRESH_TTL` | `24h` |
//! | `log_format` | `--log-format` | `IMS_LOG_FORMAT` | `human` |
//! | `quic_listen` | `--quic-listen` | `IMS_QUIC_LISTEN` | `0.0.0.0:7443` |
//! | `quic_names` | `--quic-name` (repeatable) | `IMS_QUIC_NAMES` (comma separated) | none |
//! | `heartbeat_interval` | `--heartbeat-interval` | `IMS_HEARTBEAT_INTERVAL` | `10s` |
//! | `smo_url` | `--smo-url` | `IMS_SMO_URL` | no O-Cloud registration |
//! | `smo_token_file` | `--smo-token-file` | `IMS_SMO_TOKEN_FILE` | no bearer token for the SMO |
//! | `smo_ca` | `--smo-ca` | `IMS_SMO_CA` | the system roots only |
//! | `global_cloud_id` | `--global-cloud-id` | `IMS_GLOBAL_CLOUD_ID` | the stored one |
//! | `ims_endpoint` | `--ims-endpoint` | `IMS_ENDPOINT` | stored `serviceUri`, else the listen URL |
//! | `callback_ca` | `--callback-ca` | `IMS_CALLBACK_CA` | the system roots only |
//! | `key_rotation` | `--key-rotation` | `IMS_KEY_ROTATION` | `off` (rotate with `ims-control rotate-key`) |

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::db::redact_url;
use crate::uplink::{DEFAULT_QUIC_LISTEN, UplinkSettings};

mod o2ims;

pub use o2ims::O2imsConfig;

/// Default `listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ims-control";

/// One layer of settings, as written (the file's keys, or the flags and variables given).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// HTTP(S) listen address, `IP:PORT`.
    pub listen: Option<String>,
    /// Directory for the SQLite store (and future state).
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    pub database: Option<String>,
    /// PEM certificate chain for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub tls_key: Option<PathBuf>,
    /// Access-token lifetime (`15m`, `1h`, …).
    pub access_ttl: Option<String>,
    /// Refresh-token lifetime (`24h`, `7days`, …).
    pub refresh_ttl: Option<String>,
    /// `human` or `json`.
    pub log_format: Option<String>,
    /// QUIC (edge uplink) listen address, `IP:PORT`.
    pub quic_listen: Option<String>,
    /// Extra names (DNS names or IP addresses) in the QUIC server certificate.
    pub quic_names: Option<Vec<String>>,
    /// How often edges send heartbeats (`10s`, …).
    pub heartbeat_interval: Option<String>,
    /// The SMO's O-Cloud registration URL (`http(s)://…`).
    pub smo_url: Option<String>,
    /// A file holding a bearer token for the SMO.
    pub smo_token_file: Option<PathBuf>,
    /// PEM CA certificates trusted for an `https://` SMO (besides the system roots).
    pub smo_ca: Option<PathBuf>,
    /// The SMO-assigned global cloud id (UUID).
    pub global_cloud_id: Option<String>,
    /// The public API root sent to the SMO as `IMS_EP`.
    pub ims_endpoint: Option<String>,
    /// PEM CA certificates trusted for `https://` O2ims callbacks (besides the system roots).
    pub callback_ca: Option<PathBuf>,
    /// Rotate the token signing key when it is this old (`30days`, …; `off`).
    pub key_rotation: Option<String>,
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database", &self.database.as_deref().map(redact_url))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("log_format", &self.log_format)
            .field("quic_listen", &self.quic_listen)
            .field("quic_names", &self.quic_names)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("smo_url", &self.smo_url)
            .field("smo_token_file", &self.smo_token_file)
            .field("smo_ca", &self.smo_ca)
            .field("global_cloud_id", &self.global_cloud_id)
            .field("ims_endpoint", &self.ims_endpoint)
            .field("callback_ca", &self.callback_ca)
            .field("key_rotation", &self.key_rotation)
            .finish()
    }
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A value is invalid.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the value came from: the flag and variable, or the key and file.
        origin: String,
        /// What is wrong and what is accepted.
        message: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Where the store is.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite file `ims-control.db` in this directory.
    DataDir(PathBuf),
    /// A database URL.
    Url(String),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StoreLocation {
    /// Without any password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataDir(d) => write!(f, "SQLite in {}", d.display()),
            Self::Url(u) => f.write_str(&redact_url(u)),
        }
    }
}

/// HTTPS certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Validated settings of `ims-control serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// HTTP(S) listen address.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The store.
    pub store: StoreLocation,
    /// HTTPS when set.
    pub tls: Option<TlsFiles>,
    /// Token lifetimes.
    pub auth: AuthSettings,
    /// Log format.
    pub log_format: LogFormat,
    /// The edge uplink's QUIC endpoint.
    pub uplink: UplinkSettings,
    /// O-Cloud registration and outgoing O2ims TLS.
    pub o2ims: O2imsConfig,
    /// Automatic signing-key rotation period (`None`: only `ims-control rotate-key`).
    pub key_rotation: Option<Duration>,
}

/// The file layer and the flag/variable layer.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    file: Option<(PathBuf, RawConfig)>,
    cli: RawConfig,
}

/// A value and where it came from.
struct Picked<'a, T> {
    value: &'a T,
    origin: String,
}

impl ConfigSources {
    /// Reads `file` (if any) under the `cli` layer.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn load(file: Option<&Path>, cli: RawConfig) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Some((path.to_owned(), parse_file(&text, path)?))
            }
            None => None,
        };
        Ok(Self { file, cli })
    }

    /// The two layers as given (for tests and callers that parsed the file themselves).
    #[must_use]
    pub const fn new(file: Option<(PathBuf, RawConfig)>, cli: RawConfig) -> Self {
        Self { file, cli }
    }

    /// Where the store is: `database` if set, else SQLite in `data_dir`.
    ///
    /// # Errors
    /// The database URL has an unsupported scheme.
    pub fn store(&self) -> Result<StoreLocation, ConfigError> {
        if let Some(p) = self.pick(
            |r| &r.database,
            "database",
            "--database",
            "IMS_DATABASE_URL",
        ) {
            let url = p.value.trim();
            let supported = url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://");
            if !supported {
                return Err(ConfigError::Invalid {
                    origin: p.origin,
                    message: format!(
                        "unsupported database URL `{}`: use `sqlite://PATH` or \
                         `postgres://USER:PASSWORD@HOST/DB`",
                        redact_url(url)
                    ),
                });
            }
            return Ok(StoreLocation::Url(url.to_owned()));
        }
        Ok(StoreLocation::DataDir(self.data_dir()))
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.pick(|r| &r.data_dir, "data_dir", "--data-dir", "IMS_DATA_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |p| p.value.clone())
    }

    /// The log format (for setting up logging before anything else is checked).
    ///
    /// # Errors
    /// Neither `human` nor `json`.
    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let Some(p) = self.pick(
            |r| &r.log_format,
            "log_format",
            "--log-format",
            "IMS_LOG_FORMAT",
        ) else {
            return Ok(LogFormat::Human);
        };
        match p.value.trim().to_ascii_lowercase().as_str() {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::Invalid {
                origin: p.origin,
                message: format!("`{other}` is not a log format; use `human` or `json`"),
            }),
        }
    }

    /// Everything `serve` needs, validated.
    ///
    /// # Errors
    /// The first invalid value, with where it came from.
    pub fn serve(&self) -> Result<ServeConfig, ConfigError> {
        let listen = match self.pick(|r| &r.listen, "listen", "--listen", "IMS_LISTEN") {
            Some(p) => p.value.trim().parse().map_err(|_| ConfigError::Invalid {
                origin: p.origin,
                message: format!(
                    "`{}` is not a listen address; use IP:PORT such as 127.0.0.1:8000 or [::]:8443",
                    p.value
                ),
            })?,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                origin: "default listen address".to_owned(),
                message: DEFAULT_LISTEN.to_owned(),
            })?,
        };
        let cert = self.pick(|r| &r.tls_cert, "tls_cert", "--tls-cert", "IMS_TLS_CERT");
        let key = self.pick(|r| &r.tls_key, "tls_key", "--tls-key", "IMS_TLS_KEY");
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert: c.value.clone(),
                key: k.value.clone(),
            }),
            (None, None) => None,
            (Some(p), None) | (None, Some(p)) => {
                return Err(ConfigError::Invalid {
                    origin: p.origin,
                    message: "HTTPS needs both a certificate and a key: set tls_cert and tls_key \
                              (--tls-cert/--tls-key) together"
                        .to_owned(),
                });
            }
        };
        let defaults = AuthSettings::default();
        let access_ttl = self.duration(
            |r| &r.access_ttl,
            ("access_ttl", "--access-ttl", "IMS_ACCESS_TTL"),
            defaults.access_ttl,
        )?;
        let refresh_ttl = self.duration(
            |r| &r.refresh_ttl,
            ("refresh_ttl", "--refresh-ttl", "IMS_REFRESH_TTL"),
            defaults.refresh_ttl,
        )?;
        if refresh_ttl < access_ttl {
            let origin = self
                .pick(
                    |r| &r.refresh_ttl,
                    "refresh_ttl",
                    "--refresh-ttl",
                    "IMS_REFRESH_TTL",
                )
                .map_or_else(|| "refresh_ttl".to_owned(), |p| p.origin);
            return Err(ConfigError::Invalid {
                origin,
                message: format!(
                    "the refresh-token lifetime ({}) is shorter than the access-token lifetime \
                     ({}); make it at least as long",
                    humantime::format_duration(refresh_ttl),
                    humantime::format_duration(access_ttl)
                ),
            });
        }
        let key_rotation = self.key_rotation()?;
        Ok(ServeConfig {
            listen,
            data_dir: self.data_dir(),
            store: self.store()?,
            tls,
            auth: AuthSettings {
                access_ttl,
                refresh_ttl,
            },
            log_format: self.log_format()?,
            uplink: self.uplink()?,
            o2ims: self.o2ims()?,
            key_rotation,
        })
    }

    /// `key_rotation`: `None` when absent or `off`, else at least an hour.
    fn key_rotation(&self) -> Result<Option<Duration>, ConfigError> {
        let names = ("key_rotation", "--key-rotation", "IMS_KEY_ROTATION");
        let Some(p) = self.pick(|r| &r.key_rotation, names.0, names.1, names.2) else {
            return Ok(None);
        };
        if p.value.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let origin = p.origin;
        let d = self.duration(|r| &r.key_rotation, names, Duration::ZERO)?;
        if d < Duration::from_secs(3600) {
            return Err(ConfigError::Invalid {
                origin,
                message: format!(
                    "{} is too short a signing-key lifetime: give at least 1h (such as 30days), \
                     or `off`",
                    humantime::format_duration(d)
                ),
            });
        }
        Ok(Some(d))
    }

    /// The edge uplink's settings.
    ///
    /// # Errors
    /// The listen address or interval is invalid, or a name is empty.
    pub fn uplink(&self) -> Result<UplinkSettings, ConfigError> {
        let defaults = UplinkSettings::default();
        let listen = match self.pick(
            |r| &r.quic_listen,
            "quic_listen",
            "--quic-listen",
            "IMS_QUIC_LISTEN",
        ) {
            Some(p) => p.value.trim().parse().map_err(|_| ConfigError::Invalid {
                origin: p.origin,
                message: format!(
                    "`{}` is not a listen address; use IP:PORT such as {DEFAULT_QUIC_LISTEN} \
                     or [::]:7443 (port 0 picks a free port)",
                    p.value
                ),
            })?,
            None => defaults.listen,
        };
        let names = match self.pick(
            |r| &r.quic_names,
            "quic_names",
            "--quic-name",
            "IMS_QUIC_NAMES",
        ) {
            Some(p) => {
                let names: Vec<String> = p.value.iter().map(|n| n.trim().to_owned()).collect();
                if let Some(bad) = names.iter().find(|n| !quic_name_ok(n)) {
                    return Err(ConfigError::Invalid {
                        origin: p.origin,
                        message: format!(
                            "`{bad}` is not a DNS name or IP address for the QUIC server \
                             certificate; use names like control.example.org or 192.0.2.10"
                        ),
                    });
                }
                names
            }
            None => defaults.names,
        };
        let heartbeat_interval = self.duration(
            |r| &r.heartbeat_interval,
            (
                "heartbeat_interval",
                "--heartbeat-interval",
                "IMS_HEARTBEAT_INTERVAL",
            ),
            defaults.heartbeat_interval,
        )?;
        if heartbeat_interval > Duration::from_secs(3600) {
            let origin = self
                .pick(
                    |r| &r.heartbeat_interval,
                    "heartbeat_interval",
                    "--heartbeat-interval",
                    "IMS_HEARTBEAT_INTERVAL",
                )
                .map_or_else(|| "heartbeat_interval".to_owned(), |p| p.origin);
            return Err(ConfigError::Invalid {
                origin,
                message: "must be at most 1h (workers are shown inactive after 30s without a \
                          heartbeat)"
                    .to_owned(),
            });
        }
        Ok(UplinkSettings {
            listen,
            names,
            heartbeat_interval,
        })
    }

    fn duration(
        &self,
        field: impl Fn(&RawConfig) -> &Option<String>,
        (key, flag, env): (&'static str, &'static str, &'static str),
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(p) = self.pick(field, key, flag, env) else {
            return Ok(default);
        };
        let d = humantime::parse_duration(p.value.trim()).map_err(|e| ConfigError::Invalid {
            origin: p.origin.clone(),
            message: format!(
                "`{}` is not a duration ({e}); write it like 15m, 1h or 7days",
                p.value
            ),
        })?;
        if d < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                origin: p.origin,
                message: "must be at least 1s".to_owned(),
            });
        }
        Ok(d)
    }

    /// The flag/variable value if given, else the file's, with its origin.
    fn pick<'a, T>(
        &'a self,
        field: impl Fn(&RawConfig) -> &Option<T>,
        key: &str,
        flag: &str,
        env: &str,
    ) -> Option<Picked<'a, T>> {
        if let Some(value) = field(&self.cli) {
            return Some(Picked {
                value,
                origin: format!("{flag} (or {env})"),
            });
        }
        let (path, raw) = self.file.as_ref()?;
        field(raw).as_ref().map(|value| Picked {
            value,
            origin: format!("`{key}` in {}", path.display()),
        })
    }
}

/// Whether `name` can go in the QUIC server certificate: an IP address, or a DNS name of
/// letters, digits, `.`, `-` (and a leading `*.`).
fn quic_name_ok(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Parses a configuration file's text (`path` is for messages).
///
/// # Errors
/// Not TOML, an unknown key, or a wrong type.
pub fn parse_file(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/examples/ims-control.toml");

    fn file(text: &str) -> Option<(PathBuf, RawConfig)> {
        let path = PathBuf::from("/etc/ims-control.toml");
        Some((path.clone(), parse_file(text, &path).unwrap()))
    }

    #[test]
    fn the_example_parses_and_validates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/ims-control.toml");
        let sources = ConfigSources::load(Some(&path), RawConfig::default()).unwrap();
        let c = sources.serve().unwrap();
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/ims-control"));
        assert_eq!(
            c.store,
            StoreLocation::DataDir(PathBuf::from("/var/lib/ims-control"))
        );
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/etc/ims-control/tls/cert.pem".into(),
                key: "/etc/ims-control/tls/key.pem".into(),
            })
        );
        assert_eq!(c.auth, AuthSettings::default());
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.uplink.listen, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(c.uplink.names, vec!["control.example.org".to_owned()]);
        assert_eq!(c.uplink.heartbeat_interval, Duration::from_secs(10));
        // Every key the file type knows is shown in the example (set or commented out).
        for key in [
            "listen",
            "data_dir",
            "database",
            "tls_cert",
            "tls_key",
            "access_ttl",
            "refresh_ttl",
            "log_format",
            "quic_listen",
            "quic_names",
            "heartbeat_interval",
            "smo_url",
            "smo_token_file",
            "smo_ca",
            "global_cloud_id",
            "ims_endpoint",
            "callback_ca",
        ] {
            assert!(
                EXAMPLE.contains(&format!("{key} =")),
                "{key} not documented"
            );
        }
    }

    #[test]
    fn defaults_without_any_setting() {
        let c = ConfigSources::default().serve().unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.store, StoreLocation::DataDir(DEFAULT_DATA_DIR.into()));
        assert_eq!(c.tls, None);
        assert_eq!(c.auth, AuthSettings::default());
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.uplink, UplinkSettings::default());
        assert_eq!(c.o2ims, O2imsConfig::default());
    }

    #[test]
    fn uplink_settings_from_flags_and_file() {
        let cli = RawConfig {
            quic_listen: Some("127.0.0.1:0".into()),
            quic_names: Some(vec!["ims.example.org".into(), "10.0.0.9".into()]),
            ..RawConfig::default()
        };
        let s = ConfigSources::new(file("heartbeat_interval = \"2s\"\n"), cli);
        let u = s.uplink().unwrap();
        assert_eq!(u.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(u.names, ["ims.example.org", "10.0.0.9"]);
        assert_eq!(u.heartbeat_interval, Duration::from_secs(2));

        let bad = RawConfig {
            quic_listen: Some("7443".into()),
            ..RawConfig::default()
        };
        let m = ConfigSources::new(None, bad)
            .uplink()
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("--quic-listen (or IMS_QUIC_LISTEN):"), "{m}");
        let bad = RawConfig {
            quic_names: Some(vec!["bad name".into()]),
            ..RawConfig::default()
        };
        let m = ConfigSources::new(None, bad)
            .uplink()
            .unwrap_err()
            .to_string();
        assert!(m.contains("--quic-name") && m.contains("bad name"), "{m}");
        let m = ConfigSources::new(file("heartbeat_interval = \"2h\"\n"), RawConfig::default())
            .uplink()
            .unwrap_err()
            .to_string();
        assert!(m.contains("heartbeat_interval") && m.contains("1h"), "{m}");
    }

    #[test]
    fn flags_override_the_file() {
        let cli = RawConfig {
            listen: Some("127.0.0.1:9000".into()),
            database: Some("postgres://u:secret@db/ims".into()),
            access_ttl: Some("5m".into()),
            ..RawConfig::default()
        };
        let s = ConfigSources::new(
            file("listen = \"0.0.0.0:1\"\ndata_dir = \"/srv/ims\"\naccess_ttl = \"1h\"\n"),
            cli,
        );
        let c = s.serve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/srv/ims"));
        assert_eq!(c.auth.access_ttl, Duration::from_secs(300));
        assert_eq!(c.store.to_string(), "postgres://u:***@db/ims");
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn errors_name_the_key_and_file_or_the_flag() {
        let e = parse_file("listen = \"x\"\nport = 8\n", Path::new("/etc/c.toml")).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("/etc/c.toml") && m.contains("port"), "{m}");

        let s = ConfigSources::new(file("access_ttl = \"soon\"\n"), RawConfig::default());
        let m = s.serve().unwrap_err().to_string();
        assert!(
            m.starts_with("`access_ttl` in /etc/ims-control.toml:") && m.contains("15m"),
            "{m}"
        );

        let cli = RawConfig {
            listen: Some("localhost".into()),
            ..RawConfig::default()
        };
        let m = ConfigSources::new(None, cli)
            .serve()
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("--listen (or IMS_LISTEN):"), "{m}");

        let s = ConfigSources::new(file("tls_cert = \"/c.pem\"\n"), RawConfig::default());
        let m = s.serve().unwrap_err().to_string();
        assert!(m.contains("tls_key"), "{m}");

        let cli = RawConfig {
            database: Some("mysql://root:pw@h/db".into()),
            ..RawConfig::default()
        };
        let m = ConfigSources::new(None, cli)
            .store()
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("--database (or IMS_DATABASE_URL)") && !m.contains("pw@"),
            "{m}"
        );

        let s = ConfigSources::new(
            file("access_ttl = \"2h\"\nrefresh_ttl = \"1h\"\nlog_format = \"xml\"\n"),
            RawConfig::default(),
        );
        let m = s.serve().unwrap_err().to_string();
        assert!(m.contains("refresh_ttl") && m.contains("shorter"), "{m}");
        let m = s.log_format().unwrap_err().to_string();
        assert!(m.contains("log_format") && m.contains("json"), "{m}");
    }
}
