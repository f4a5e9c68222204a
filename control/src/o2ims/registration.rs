//! O-Cloud registration with the SMO (O-RAN O2ims §3.6.5, the "OCloud Available
//! Notification"): when `serve --smo-url URL` is set, a background task POSTs
//!
//! ```json
//! {"globalCloudId": "…", "oCloudId": "…", "IMS_EP": "https://ims.example:8443",
//!  "smo_token_data": {"iss": "o2ims", "aud": "smo", "smo_token_payload": "…",
//!                     "smo_token_type": "jwt", "smo_token_expiration": "…",
//!                     "smo_token_algo": "RS256"}}
//! ```
//!
//! as JSON to the SMO and retries with exponential backoff (1 s doubling to 5 min,
//! [`super::delivery::backoff_ms`]) until the SMO answers 2xx. `smo_token_data` is the
//! structure of the original design (pti-o2's extension): the token of `--smo-token-file`
//! (also sent as `Authorization: Bearer`), its type (`jwt` when it is one, else `bearer`),
//! expiry (`exp`, RFC 3339) and algorithm (`alg`) read from an unverified JWT's header and
//! payload, empty strings when unknown; without a token file the payload is empty.
//!
//! `globalCloudId` is `--global-cloud-id` (stored at start, so the inventory's `CloudInfo`
//! shows it and later starts may omit it) or the stored one; without either, registration is
//! not attempted and an error is logged. `IMS_EP` is `--ims-endpoint`, else the stored
//! `serviceUri` setting, else the server's own listen URL.
//!
//! Success is recorded in `settings` (`o2ims_smo_registration`: JSON with the URL, time and
//! attempts), logged, and shown by the metric `ims_o2ims_registered` (1); every POST counts in
//! `ims_o2ims_registration_attempts_total`. The task never blocks start-up or the API. With
//! several replicas on one database each registers on its own start: the POST is idempotent
//! (the same body every time), so the SMO just sees the O-Cloud announced again, as after a
//! restart. HTTPS to the SMO trusts the system roots plus `--smo-ca`.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, header};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use uuid::Uuid;

use super::delivery::{self, HttpClient};
use super::{cloud_settings, set_global_cloud_id};
use crate::config::O2imsConfig;
use crate::db::{Db, StoreError, format_ts, now_ms};
use crate::metrics::Metrics;

/// `settings` key of the last successful registration (JSON).
pub const REGISTRATION_KEY: &str = "o2ims_smo_registration";
/// How long one registration POST may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the registration task needs.
#[derive(Clone)]
pub struct Registration {
    /// The SMO's registration URL.
    pub smo_url: String,
    /// Bearer token for the SMO (never logged).
    pub smo_token: Option<String>,
    /// Extra CAs for an `https://` SMO.
    pub smo_ca: Vec<CertificateDer<'static>>,
    /// `--global-cloud-id`, stored before the first attempt.
    pub global_cloud_id: Option<Uuid>,
    /// `--ims-endpoint`.
    pub ims_endpoint: Option<String>,
    /// `IMS_EP` when neither `--ims-endpoint` nor a stored `serviceUri` is set.
    pub fallback_endpoint: String,
    /// First retry delay (1 s; tests shorten it). Doubles up to [`delivery::MAX_BACKOFF`].
    pub first_backoff: Duration,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("smo_url", &self.smo_url)
            .field("smo_token", &self.smo_token.as_ref().map(|_| "<redacted>"))
            .field("smo_ca", &self.smo_ca.len())
            .field("global_cloud_id", &self.global_cloud_id)
            .field("ims_endpoint", &self.ims_endpoint)
            .field("fallback_endpoint", &self.fallback_endpoint)
            .finish_non_exhaustive()
    }
}

/// Why the registration settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The token file cannot be read or does not hold one token.
    #[error("--smo-token-file: {0}")]
    Token(String),
    /// The CA file cannot be read.
    #[error("--smo-ca: {0}")]
    Ca(String),
}

impl Registration {
    /// The registration of `serve --smo-url` (reading the token and CA files), or `None`
    /// without an SMO URL. `fallback_endpoint` is left empty for the caller to fill in once
    /// the listener is bound.
    ///
    /// # Errors
    /// A file cannot be read or holds nothing usable.
    pub fn from_config(c: &O2imsConfig) -> Result<Option<Self>, SettingsError> {
        let Some(url) = &c.smo_url else {
            return Ok(None);
        };
        let smo_token = match &c.smo_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SettingsError::Token(format!("cannot read {}: {e}", path.display()))
                })?;
                let token = text.trim().to_owned();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(SettingsError::Token(format!(
                        "{} must hold one bearer token on one line",
                        path.display()
                    )));
                }
                Some(token)
            }
            None => None,
        };
        let smo_ca = match &c.smo_ca {
            Some(path) => delivery::load_ca_file(path).map_err(SettingsError::Ca)?,
            None => Vec::new(),
        };
        Ok(Some(Self {
            smo_url: url.clone(),
            smo_token,
            smo_ca,
            global_cloud_id: c.global_cloud_id,
            ims_endpoint: c.ims_endpoint.clone(),
            fallback_endpoint: String::new(),
            first_backoff: Duration::from_secs(1),
        }))
    }
}

/// Why registration could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// No global cloud id configured or stored.
    #[error(
        "no global cloud id: give the one the SMO assigned with --global-cloud-id \
         (IMS_GLOBAL_CLOUD_ID); O-Cloud registration is not attempted"
    )]
    NoGlobalCloudId,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `smo_token_data` object for `token` (see the module docs).
#[must_use]
pub fn smo_token_data(token: Option<&str>) -> Value {
    let token = token.unwrap_or("");
    let mut kind = if token.is_empty() { "" } else { "bearer" };
    let (mut algo, mut expiration) = (String::new(), String::new());
    let mut parts = token.split('.');
    if let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        };
        if let (Some(header), Some(payload)) = (decode(h), decode(p)) {
            kind = "jwt";
            algo = header["alg"].as_str().unwrap_or("").to_owned();
            if let Some(exp) = payload["exp"].as_i64() {
                expiration = format_ts(exp.saturating_mul(1000));
            }
        }
    }
    json!({
        "iss": "o2ims",
        "aud": "smo",
        "smo_token_payload": token,
        "smo_token_type": kind,
        "smo_token_expiration": expiration,
        "smo_token_algo": algo,
    })
}

/// The registration body for the stored O-Cloud (storing `--global-cloud-id` first).
///
/// # Errors
/// No global cloud id, or the store failed.
pub async fn body(db: &Db, r: &Registration) -> Result<Value, RegistrationError> {
    if let Some(id) = r.global_cloud_id {
        set_global_cloud_id(db, id).await?;
    }
    let cloud = cloud_settings(db).await?;
    if cloud.global_cloud_id.is_nil() {
        return Err(RegistrationError::NoGlobalCloudId);
    }
    let endpoint = r
        .ims_endpoint
        .clone()
        .or(cloud.service_uri)
        .unwrap_or_else(|| r.fallback_endpoint.clone());
    Ok(json!({
        "globalCloudId": cloud.global_cloud_id,
        "oCloudId": cloud.ocloud_id,
        "IMS_EP": endpoint,
        "smo_token_data": smo_token_data(r.smo_token.as_deref()),
    }))
}

/// One registration POST; Ok with the SMO's status on a 2xx answer.
///
/// # Errors
/// Why the SMO did not accept it.
pub async fn attempt(client: &HttpClient, r: &Registration, body: &Value) -> Result<u16, String> {
    let mut request = Request::post(&r.smo_url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json");
    if let Some(token) = &r.smo_token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("bad SMO request: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("cannot reach the SMO: {}", chain(&e)))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("the SMO answered {status}"))
        }
    };
    tokio::time::timeout(SEND_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the SMO did not answer within {} s",
                SEND_TIMEOUT.as_secs()
            ))
        })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// Records a successful registration in `settings`.
///
/// # Errors
/// The store failed.
pub async fn record_success(db: &Db, r: &Registration, attempts: u64) -> Result<(), StoreError> {
    let value = json!({
        "smoUrl": r.smo_url,
        "registeredAt": format_ts(now_ms()),
        "attempts": attempts,
    });
    let mut tx = db.begin_write().await?;
    super::put_setting(&mut tx, REGISTRATION_KEY, &value.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

/// The last successful registration, as recorded.
///
/// # Errors
/// The store failed.
pub async fn recorded(db: &Db) -> Result<Option<Value>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
        .bind(REGISTRATION_KEY)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.and_then(|(v,)| serde_json::from_str(&v).ok()))
}

/// Registers until the SMO accepts (or the task is aborted); returns the number of POSTs.
pub async fn run(db: Db, r: Registration, metrics: std::sync::Arc<Metrics>) -> u64 {
    metrics.o2ims_registered.set(0);
    let client = delivery::client_trusting(&r.smo_ca);
    let mut attempts: u64 = 0;
    let mut delay = r.first_backoff;
    loop {
        let outcome = match body(&db, &r).await {
            Ok(body) => {
                attempts += 1;
                metrics.o2ims_registration_attempts.inc();
                attempt(&client, &r, &body).await
            }
            Err(RegistrationError::NoGlobalCloudId) => {
                tracing::error!("{}", RegistrationError::NoGlobalCloudId);
                return attempts;
            }
            Err(e) => Err(format!("cannot read the O-Cloud settings: {e}")),
        };
        match outcome {
            Ok(status) => {
                metrics.o2ims_registered.set(1);
                if let Err(e) = record_success(&db, &r, attempts).await {
                    tracing::warn!("O-Cloud registration not recorded in the store: {e}");
                }
                tracing::info!(smo_url = %r.smo_url, status, attempts,
                    "O-Cloud registered with the SMO");
                return attempts;
            }
            Err(e) => {
                tracing::warn!(smo_url = %r.smo_url, attempts,
                    retry_in = %humantime::format_duration(delay),
                    "O-Cloud registration not accepted (retrying): {e}");
            }
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2).min(delivery::MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_data_from_a_jwt() {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let jwt = format!(
            "{}.{}.sig",
            enc(json!({"alg": "RS256", "typ": "JWT"})),
            enc(json!({"exp": 1_900_000_000, "sub": "ims"}))
        );
        let d = smo_token_data(Some(&jwt));
        assert_eq!(d["smo_token_type"], "jwt");
        assert_eq!(d["smo_token_algo"], "RS256");
        assert_eq!(d["smo_token_expiration"], format_ts(1_900_000_000_000));
        assert_eq!(d["smo_token_payload"], jwt.as_str());
        assert_eq!(d["iss"], "o2ims");
        assert_eq!(d["aud"], "smo");
        let opaque = smo_token_data(Some("opaque-token"));
        assert_eq!(opaque["smo_token_type"], "bearer");
        assert_eq!(opaque["smo_token_algo"], "");
        let none = smo_token_data(None);
        assert_eq!(none["smo_token_payload"], "");
        assert_eq!(none["smo_token_type"], "");
    }
}
