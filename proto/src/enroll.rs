//! Enrolment: how an edge obtains its client certificate with a one-time join token.
//!
//! The edge opens a connection with ALPN [`enroll_alpn()`](crate::enroll_alpn), verifying the
//! server against the CA fingerprint carried in the join token (it has no certificate yet, so
//! it sends none). It sends one [`EnrollRequest`] and gets one [`EnrollResponse`], or an
//! [`ErrorReply`](crate::ErrorReply) with [`ErrorCode::InvalidToken`](crate::ErrorCode) or
//! [`ErrorCode::InvalidCsr`](crate::ErrorCode). Both travel inside
//! [`EdgeMessage`](crate::EdgeMessage) / [`ControlMessage`](crate::ControlMessage), framed like
//! every other message; decoders on this unauthenticated path should use the small
//! [`MAX_ENROLL_FRAME`](crate::MAX_ENROLL_FRAME) limit.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The edge asks to be enrolled.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time join token (`ims-control join-token --site NAME`). Secret: not shown by
    /// `Debug`.
    pub token: String,
    /// PKCS#10 certificate signing request for the edge's new key pair, DER. Travels as a CBOR
    /// byte string.
    #[serde(with = "crate::tagged::der_bytes")]
    pub csr_der: Vec<u8>,
    /// The edge host's name.
    pub hostname: String,
    /// `netbootd` version.
    pub software_version: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .field("csr_der", &format_args!("<{} bytes>", self.csr_der.len()))
            .field("hostname", &self.hostname)
            .field("software_version", &self.software_version)
            .finish()
    }
}

/// Enrolment succeeded: the edge's certificate and identity.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The worker id the certificate names.
    pub worker_id: String,
    /// The site the certificate names.
    pub site: String,
    /// The edge's client certificate, DER. Travels as a CBOR byte string.
    #[serde(with = "crate::tagged::der_bytes")]
    pub certificate_der: Vec<u8>,
    /// The control plane's CA certificate, DER: the edge trusts only it for the uplink.
    #[serde(with = "crate::tagged::der_bytes")]
    pub ca_der: Vec<u8>,
    /// Where to connect for the uplink (`HOST:PORT`), when not the enrolment endpoint.
    #[serde(default)]
    pub control_endpoint: Option<String>,
}

impl fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("worker_id", &self.worker_id)
            .field("site", &self.site)
            .field(
                "certificate_der",
                &format_args!("<{} bytes>", self.certificate_der.len()),
            )
            .field("ca_der", &format_args!("<{} bytes>", self.ca_der.len()))
            .field("control_endpoint", &self.control_endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let req = EnrollRequest {
            token: "s3cret-token".into(),
            csr_der: vec![0x30, 0x82, 1, 2],
            hostname: "edge-1".into(),
            software_version: "0.1.0".into(),
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("<4 bytes>") && shown.contains("edge-1"),
            "{shown}"
        );
    }
}
