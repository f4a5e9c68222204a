//! Enrolment connections (ALPN `ims-enroll/1`, no client certificate): one
//! [`EnrollRequest`] in, one [`EnrollResponse`] or [`ErrorReply`] out.
//!
//! Checks, in order (nothing is written until all pass): the token is well formed and carries
//! this CA's fingerprint; the CSR parses and its self-signature verifies (so a bad CSR does not
//! burn the token); then, in one write transaction, the token is consumed (known, unused,
//! unexpired), a worker id `<site>-<hostname>` is made unique, the worker row is inserted
//! (status `inactive` until its first session), the certificate is issued and its serial
//! recorded. A failure anywhere rolls everything back, the token included.

use std::net::SocketAddr;
use std::sync::Arc;

use ims_proto::{
    ControlMessage, EdgeMessage, EnrollRequest, EnrollResponse, ErrorCode, ErrorReply,
    MAX_ENROLL_FRAME,
};
use quinn::Connection;

use crate::db::{StoreError, now_ms};
use crate::uplink::ca::{IssuedCert, parse_csr};
use crate::uplink::identity::worker_id_base;
use crate::uplink::registry;
use crate::uplink::server::Shared;
use crate::uplink::tokens::{self, JoinToken};
use crate::uplink::wire::{self, CLOSE_DONE, Inbound, reply};

/// Longest host name or version string kept from a request.
pub(crate) const MAX_TEXT: usize = 255;

/// Serves one enrolment connection.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Connection) {
    let remote = conn.remote_address();
    let accepted = tokio::time::timeout(wire::FIRST_MESSAGE_TIMEOUT, conn.accept_bi()).await;
    let Ok(Ok((mut send, recv))) = accepted else {
        tracing::info!(%remote, "enrolment connection sent no request; closed");
        conn.close(wire::CLOSE_PROTOCOL.into(), b"no enrolment request");
        return;
    };
    let mut inbound = wire::spawn_reader(recv, MAX_ENROLL_FRAME);
    let first = tokio::time::timeout(wire::FIRST_MESSAGE_TIMEOUT, inbound.recv()).await;
    let outcome = match first {
        Ok(Some(Inbound::Message(EdgeMessage::EnrollRequest(req)))) => {
            enrol(&shared, &req, remote).await
        }
        Ok(Some(Inbound::Message(other))) => Err(reply(
            ErrorCode::BadMessage,
            format!(
                "an enrolment connection carries one EnrollRequest, not {}",
                other.kind()
            ),
        )),
        Ok(Some(Inbound::Malformed(e) | Inbound::Failed(e) | Inbound::Lost(e))) => {
            Err(reply(ErrorCode::BadMessage, e))
        }
        Ok(Some(Inbound::Ended) | None) | Err(_) => Err(reply(
            ErrorCode::BadMessage,
            "no EnrollRequest arrived within 10 s",
        )),
    };
    match outcome {
        Ok(resp) => {
            tracing::info!(
                %remote,
                worker = resp.worker_id,
                site = resp.site,
                "enrolled a worker"
            );
            let msg = ControlMessage::EnrollResponse(resp);
            wire::finish(&conn, &mut send, Some(&msg), CLOSE_DONE, "enrolled").await;
        }
        Err(error) => {
            tracing::info!(%remote, code = %error.code, "enrolment refused: {}", error.message);
            let code = wire::close_code(error.code);
            let reason = error.message.clone();
            let msg = ControlMessage::Error(error);
            wire::finish(&conn, &mut send, Some(&msg), code, &reason).await;
        }
    }
}

fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn internal(e: impl std::fmt::Display) -> ErrorReply {
    tracing::error!("enrolment failed: {e}");
    ErrorReply {
        code: ErrorCode::Unavailable,
        message: "the control plane could not complete the enrolment; retry in a minute".to_owned(),
        retry_after_ms: Some(60_000),
    }
}

/// Decides one request; `Ok` holds the response to send.
async fn enrol(
    shared: &Shared,
    req: &EnrollRequest,
    remote: SocketAddr,
) -> Result<EnrollResponse, ErrorReply> {
    let token: JoinToken = req
        .token
        .parse()
        .map_err(|e: tokens::TokenFormatError| reply(ErrorCode::InvalidToken, e.to_string()))?;
    if token.ca_fingerprint() != shared.ca.fingerprint() {
        return Err(reply(
            ErrorCode::InvalidToken,
            "the join token names another CA than this control plane's: it was made by \
             another control plane; make one here with `ims-control join-token --site NAME`",
        ));
    }
    let csr = parse_csr(&req.csr_der).map_err(|e| reply(ErrorCode::InvalidCsr, e.to_string()))?;
    let hostname = clean(&req.hostname);
    let version = clean(&req.software_version);
    let db = &shared.app.db;
    let now = now_ms();
    let mut tx = db.begin_write().await.map_err(internal)?;
    let consumed = tokens::consume(&mut tx, &token, now)
        .await
        .map_err(internal)?
        .map_err(|refusal| reply(ErrorCode::InvalidToken, refusal.to_string()))?;
    let site = registry::site_name(&mut tx, consumed.site_id)
        .await
        .map_err(internal)?;
    let Some(site) = site else {
        return Err(reply(
            ErrorCode::InvalidToken,
            "the join token's site no longer exists; make a token for an existing site",
        ));
    };
    let worker_id = registry::allocate_worker_id(&mut tx, &worker_id_base(&site, &hostname))
        .await
        .map_err(internal)?;
    registry::insert_worker(
        &mut tx,
        &worker_id,
        consumed.site_id,
        &version,
        Some(remote.ip().to_string()),
        now,
    )
    .await
    .map_err(internal)?;
    let IssuedCert { der, .. } = {
        let issued = shared
            .ca
            .issue_worker_cert(csr, &worker_id, &site, now)
            .map_err(internal)?;
        registry::insert_cert(&mut tx, &worker_id, &issued, now)
            .await
            .map_err(internal)?;
        issued
    };
    tokens::set_worker(&mut tx, consumed.token_id, &worker_id)
        .await
        .map_err(internal)?;
    tx.commit()
        .await
        .map_err(|e| internal(StoreError::from(e)))?;
    Ok(EnrollResponse {
        worker_id,
        site,
        certificate_der: der,
        ca_der: shared.ca.cert_der().to_vec(),
        control_endpoint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_is_cleaned() {
        assert_eq!(clean("  edge-1\n"), "edge-1");
        assert_eq!(clean("a\u{0}b\u{1b}[31m"), "ab[31m");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_TEXT);
    }
}
