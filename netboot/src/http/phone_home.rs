//! `POST /phone-home/{mac}`: the installed OS reports in. Recorded durably as
//! [`EventKind::PhoneHome`] before the `204`; unknown MACs get `404` and are not recorded (see
//! the parent module docs for why). Needs only the local event log, not the control plane.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use ims_proto::MacAddr;

use super::{App, empty, percent_decode, text, unavailable, unix_now};
use crate::store::events::{EventKind, MAX_PHONE_HOME_BODY};

pub(super) async fn handle(app: &App, peer: SocketAddr, req: Request) -> Response {
    let raw = req
        .uri()
        .path()
        .strip_prefix("/phone-home/")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let parsed = percent_decode(&raw)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<MacAddr>().ok());
    let Some(mac) = parsed else {
        return text(
            StatusCode::BAD_REQUEST,
            "not a MAC address: use /phone-home/52:54:00:12:34:56\n",
        );
    };
    if !app.state.catalog().machines.contains_key(&mac) {
        tracing::debug!(%mac, %peer, "phone-home from an unregistered MAC: 404, not recorded");
        return text(
            StatusCode::NOT_FOUND,
            format!("{mac} is not a registered machine: nothing recorded\n"),
        );
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_PHONE_HOME_BODY).await else {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("phone-home body is limited to {MAX_PHONE_HOME_BODY} bytes\n"),
        );
    };
    let Some(recorder) = &app.recorder else {
        tracing::error!(%mac, %peer, "phone-home not recorded: the HTTP server has no event log");
        return unavailable("phone-home cannot be recorded: this netbootd has no event log\n");
    };
    let body_len = body.len();
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let kind = EventKind::PhoneHome {
        mac,
        ip: Some(peer.ip().to_canonical()),
        body,
    };
    match recorder.record_durably(unix_now(), kind).await {
        Ok(seq) => {
            tracing::info!(%mac, %peer, seq, body_bytes = body_len, "phone-home");
            empty(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::error!(%mac, %peer, "phone-home not recorded: {e}");
            unavailable(format!(
                "phone-home could not be recorded ({e}): retry later\n"
            ))
        }
    }
}
