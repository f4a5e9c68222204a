//! The O2ims settings of `serve` ([`O2imsConfig`]): O-Cloud registration with the SMO and the
//! CAs trusted for outgoing HTTPS (see `crate::o2ims::registration` and
//! `crate::o2ims::delivery`).

use std::path::PathBuf;

use super::{ConfigError, ConfigSources, Picked, RawConfig};

/// O2ims settings of `serve`: O-Cloud registration with the SMO and the CAs of HTTPS
/// callbacks (files are read when the server starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct O2imsConfig {
    /// Register with the SMO at this `http://` or `https://` URL.
    pub smo_url: Option<String>,
    /// Bearer token file for the SMO.
    pub smo_token_file: Option<PathBuf>,
    /// Extra CAs for an `https://` SMO.
    pub smo_ca: Option<PathBuf>,
    /// The SMO-assigned global cloud id (stored at start when given).
    pub global_cloud_id: Option<uuid::Uuid>,
    /// The public API root (`IMS_EP`).
    pub ims_endpoint: Option<String>,
    /// Extra CAs for `https://` callbacks.
    pub callback_ca: Option<PathBuf>,
}

impl ConfigSources {
    /// The O2ims settings: registration URL, token and CA files, ids and endpoints.
    ///
    /// # Errors
    /// A URL is not `http(s)://HOST…`, or the global cloud id is not a UUID.
    pub fn o2ims(&self) -> Result<O2imsConfig, ConfigError> {
        let url = |p: Option<Picked<'_, String>>, example: &str| {
            p.map(|p| {
                let v = p.value.trim();
                let ok = (v.starts_with("http://") || v.starts_with("https://"))
                    && v.parse::<axum::http::Uri>()
                        .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
                if ok {
                    Ok(v.to_owned())
                } else {
                    Err(ConfigError::Invalid {
                        origin: p.origin,
                        message: format!(
                            "`{v}` is not an absolute http:// or https:// URL; write it like \
                             {example}"
                        ),
                    })
                }
            })
            .transpose()
        };
        let smo_url = url(
            self.pick(|r| &r.smo_url, "smo_url", "--smo-url", "IMS_SMO_URL"),
            "https://smo.example.org/o2ims/register",
        )?;
        let ims_endpoint = url(
            self.pick(
                |r| &r.ims_endpoint,
                "ims_endpoint",
                "--ims-endpoint",
                "IMS_ENDPOINT",
            ),
            "https://ims.example.org:8443",
        )?
        .map(|u| u.trim_end_matches('/').to_owned());
        let global_cloud_id = self
            .pick(
                |r| &r.global_cloud_id,
                "global_cloud_id",
                "--global-cloud-id",
                "IMS_GLOBAL_CLOUD_ID",
            )
            .map(|p| {
                p.value.trim().parse().map_err(|_| ConfigError::Invalid {
                    origin: p.origin,
                    message: format!(
                        "`{}` is not a UUID; give the global cloud id the SMO assigned, like \
                         8c1c151d-2dbb-4d5e-9ff5-2f1a3b1c2d3e",
                        p.value
                    ),
                })
            })
            .transpose()?;
        let path = |field: fn(&RawConfig) -> &Option<PathBuf>, key, flag, env| {
            self.pick(field, key, flag, env).map(|p| p.value.clone())
        };
        Ok(O2imsConfig {
            smo_url,
            smo_token_file: path(
                |r| &r.smo_token_file,
                "smo_token_file",
                "--smo-token-file",
                "IMS_SMO_TOKEN_FILE",
            ),
            smo_ca: path(|r| &r.smo_ca, "smo_ca", "--smo-ca", "IMS_SMO_CA"),
            global_cloud_id,
            ims_endpoint,
            callback_ca: path(
                |r| &r.callback_ca,
                "callback_ca",
                "--callback-ca",
                "IMS_CALLBACK_CA",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tests_file(text: &str) -> Option<(PathBuf, RawConfig)> {
        let path = PathBuf::from("/etc/ims-control.toml");
        Some((path.clone(), super::super::parse_file(text, &path).unwrap()))
    }

    #[test]
    fn o2ims_settings() {
        let cli = RawConfig {
            smo_url: Some("https://smo.example/register".into()),
            global_cloud_id: Some("8c1c151d-2dbb-4d5e-9ff5-2f1a3b1c2d3e".into()),
            ..RawConfig::default()
        };
        let s = ConfigSources::new(
            tests_file("ims_endpoint = \"https://ims.example:8443/\"\nsmo_ca = \"/etc/smo.pem\"\n"),
            cli,
        );
        let o = s.o2ims().unwrap();
        assert_eq!(o.smo_url.as_deref(), Some("https://smo.example/register"));
        assert_eq!(o.ims_endpoint.as_deref(), Some("https://ims.example:8443"));
        assert_eq!(o.smo_ca, Some(PathBuf::from("/etc/smo.pem")));
        assert!(o.global_cloud_id.is_some());
        for (cli, needle) in [
            (
                RawConfig {
                    smo_url: Some("smo.example".into()),
                    ..RawConfig::default()
                },
                "--smo-url",
            ),
            (
                RawConfig {
                    global_cloud_id: Some("nope".into()),
                    ..RawConfig::default()
                },
                "--global-cloud-id",
            ),
            (
                RawConfig {
                    ims_endpoint: Some("ftp://x".into()),
                    ..RawConfig::default()
                },
                "--ims-endpoint",
            ),
        ] {
            let m = ConfigSources::new(None, cli)
                .o2ims()
                .unwrap_err()
                .to_string();
            assert!(m.contains(needle), "{m}");
        }
    }
}
