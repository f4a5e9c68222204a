//! `netbootd enroll`: obtain this edge's certificate from the control plane with a one-time
//! join token.
//!
//! 1. Generate an ECDSA P-256 key pair and a certificate signing request (rcgen; CN = host
//!    name; the control plane decides the names in the certificate).
//! 2. Connect over QUIC with ALPN `ims-enroll/1`, without a client certificate, verifying the
//!    control plane against the CA whose SHA-256 fingerprint the token carries
//!    ([`super::tls::PinnedCaVerifier`]).
//! 3. Send one `EnrollRequest` frame; read one `EnrollResponse` (or `Error`) frame.
//! 4. Check the CA returned is the pinned one, and write the identity
//!    ([`super::identity::save`]).
//!
//! The whole exchange has a deadline ([`ENROLL_TIMEOUT`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ims_proto::{
    ControlMessage, EdgeMessage, EnrollRequest, ErrorCode, FRAME_HEADER_LEN, FrameDecoder,
    MAX_ENROLL_FRAME, encode_frame,
};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::conn;
use super::identity::{self, IdentityInfo};
use super::tls::{PinnedCaVerifier, enroll_client_config};
use crate::config::Endpoint;
use crate::uplink::token::{JoinToken, fingerprint, hex};

/// Deadline of the whole enrolment.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why enrolment failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The key pair or CSR could not be made.
    #[error("generating the key pair and certificate request: {0}")]
    Key(String),
    /// The control plane's certificates do not include the CA the token names.
    #[error(
        "the control plane at {endpoint} is not the one that issued the join token: none of \
         its certificates has the CA fingerprint {expected} (it sent {seen}); check the \
         --control address, or get a token from this control plane"
    )]
    FingerprintMismatch {
        /// The control address.
        endpoint: String,
        /// The fingerprint in the token.
        expected: String,
        /// The fingerprints the server sent.
        seen: String,
    },
    /// The control plane refused the request.
    #[error("the control plane refused the enrolment ({code}): {message}{hint}")]
    Refused {
        /// Its error code.
        code: String,
        /// Its message.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// No connection or no answer.
    #[error("cannot enrol with the control plane at {endpoint}: {reason}")]
    Unreachable {
        /// The control address.
        endpoint: String,
        /// What happened.
        reason: String,
    },
    /// No answer within [`ENROLL_TIMEOUT`].
    #[error(
        "no answer from the control plane at {endpoint} within {} s: check the address, that \
         ims-control runs with --quic-listen, and that UDP port {port} is reachable",
        ENROLL_TIMEOUT.as_secs()
    )]
    Timeout {
        /// The control address.
        endpoint: String,
        /// Its port.
        port: u16,
    },
    /// The control plane answered something unusable.
    #[error("the control plane's answer is unusable: {0}")]
    BadAnswer(String),
    /// The identity could not be written.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// What enrolment produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The worker id the certificate names.
    pub worker_id: String,
    /// The site.
    pub site: String,
    /// Where the uplink should connect (the control plane's suggestion, else the address
    /// used for enrolment).
    pub endpoint: String,
    /// The directory the identity was written to.
    pub dir: PathBuf,
}

/// Enrol with the control plane at `endpoint` (certificate name `server_name`) using `token`,
/// and write the identity under `data_dir`. `enrolled_at` is the RFC 3339 time to record.
///
/// # Errors
/// See [`EnrollError`].
pub async fn enroll(
    data_dir: &Path,
    endpoint: &Endpoint,
    server_name: &str,
    token: &JoinToken,
    hostname: &str,
    enrolled_at: String,
) -> Result<Enrolled, EnrollError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let request = EdgeMessage::EnrollRequest(EnrollRequest {
        token: token.text.clone(),
        csr_der: csr.der().to_vec(),
        hostname: hostname.to_owned(),
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
    });
    let verifier = Arc::new(PinnedCaVerifier::new(token.ca_fingerprint));
    let config =
        enroll_client_config(Arc::clone(&verifier)).map_err(|e| EnrollError::Key(e.to_string()))?;
    let shown = endpoint.to_string();
    let exchange = async {
        let opened = conn::connect(endpoint, server_name, config, ENROLL_TIMEOUT).await;
        let mut opened = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                if let Some(seen) = verifier.mismatch() {
                    return Err(EnrollError::FingerprintMismatch {
                        endpoint: shown.clone(),
                        expected: hex(&token.ca_fingerprint),
                        seen: seen.join(", "),
                    });
                }
                return Err(EnrollError::Unreachable {
                    endpoint: shown.clone(),
                    reason,
                });
            }
        };
        let frame = encode_frame(&request).map_err(|e| EnrollError::Key(e.to_string()))?;
        let unreachable = |reason: String| EnrollError::Unreachable {
            endpoint: shown.clone(),
            reason,
        };
        opened
            .send
            .write_all(&frame)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = opened.send.finish();
        let bytes = opened
            .recv
            .read_to_end(MAX_ENROLL_FRAME + FRAME_HEADER_LEN)
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        opened.connection.close(0u32.into(), b"enrolled");
        opened.endpoint.wait_idle().await;
        let mut decoder = FrameDecoder::<ControlMessage>::with_max_frame(MAX_ENROLL_FRAME);
        decoder.push(&bytes);
        decoder
            .pop()
            .map_err(|e| EnrollError::BadAnswer(e.to_string()))?
            .ok_or_else(|| {
                EnrollError::BadAnswer("the control plane closed without an answer".to_owned())
            })
    };
    let answer = match tokio::time::timeout(ENROLL_TIMEOUT, exchange).await {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(EnrollError::Timeout {
                endpoint: shown,
                port: endpoint.port,
            });
        }
    };
    let response = match answer {
        ControlMessage::EnrollResponse(response) => response,
        ControlMessage::Error(reply) => {
            let hint = match reply.code {
                ErrorCode::InvalidToken => {
                    "; join tokens are single-use and expire: get a new one with `ims-control \
                     join-token --site NAME`"
                }
                ErrorCode::InvalidCsr => "; this is a bug in netbootd or ims-control",
                _ => "",
            };
            return Err(EnrollError::Refused {
                code: reply.code.as_str().to_owned(),
                message: reply.message,
                hint,
            });
        }
        other => {
            return Err(EnrollError::BadAnswer(format!(
                "expected EnrollResponse, got {}",
                other.kind()
            )));
        }
    };
    if fingerprint(&response.ca_der) != token.ca_fingerprint {
        return Err(EnrollError::BadAnswer(
            "the CA certificate in the answer is not the one the join token names".to_owned(),
        ));
    }
    if response.certificate_der.is_empty() || response.worker_id.is_empty() {
        return Err(EnrollError::BadAnswer(
            "the answer holds no certificate or worker id".to_owned(),
        ));
    }
    let info = IdentityInfo {
        worker_id: response.worker_id.clone(),
        site: response.site.clone(),
        enrolled_at,
    };
    let dir = identity::save(
        data_dir,
        &info,
        &response.ca_der,
        &response.certificate_der,
        &key.serialize_pem(),
    )?;
    Ok(Enrolled {
        worker_id: response.worker_id,
        site: response.site,
        endpoint: response
            .control_endpoint
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| endpoint.to_string()),
        dir,
    })
}
