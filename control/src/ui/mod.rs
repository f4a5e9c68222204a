//! The operators' web UI: a small hand-written JavaScript application served by `ims-control`
//! at `/`, with its assets embedded in the binary (no JavaScript build step).
//!
//! - `GET /` answers the HTML shell (never cached, so a new binary's assets are picked up).
//! - `GET /ui/{version}/{file}` answers one asset. `version` is a hash of every asset's bytes,
//!   written into the shell's URLs, so assets can be cached for a year and still change with
//!   the binary; ES module imports are relative and inherit it.
//! - [`stream`] is the live feed of the workers dashboard (`GET /api/workers/stream`), part of
//!   the REST API and its OpenAPI document.
//!
//! Everything is same-origin files (no inline scripts, styles or event handlers), so the
//! server's `Content-Security-Policy: default-src 'self'` holds.

pub mod stream;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every asset under `/ui/{version}/`.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("table.js", JS),
    asset!("forms.js", JS),
    asset!("resources.js", JS),
    asset!("machines.js", JS),
    asset!("workers.js", JS),
    asset!("topology.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The HTML shell; `{{V}}` stands for [`version`].
const INDEX: &str = include_str!("assets/index.html");

/// The assets' version: 16 hex digits of an FNV-1a hash over every asset's name and bytes.
#[must_use]
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let shell = std::iter::once(("index.html".as_bytes(), INDEX.as_bytes()));
        let files = ASSETS.iter().map(|a| (a.name.as_bytes(), a.bytes));
        for (name, bytes) in shell.chain(files) {
            for b in name.iter().chain(bytes) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    })
}

/// The UI's routes (no state): `/` and `/ui/{version}/{file}`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{version}/{file}", get(asset))
}

async fn index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        INDEX.replace("{{V}}", version()),
    )
        .into_response()
}

async fn asset(Path((v, file)): Path<(String, String)>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI file `{file}`: the UI's files are linked from /"),
        )
            .into_response();
    };
    // An old version's URL gets today's file, uncached.
    let cache = if v == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        a.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_stable_hex() {
        assert_eq!(version().len(), 16);
        assert!(version().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(version(), version());
    }

    #[test]
    fn shell_links_versioned_assets_only() {
        let html = INDEX.replace("{{V}}", version());
        assert!(html.contains(&format!("/ui/{}/app.js", version())));
        assert!(!html.contains("<script>"), "no inline scripts (CSP)");
        assert!(!html.contains("style="), "no inline styles (CSP)");
    }
}
