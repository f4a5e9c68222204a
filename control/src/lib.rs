//! The control plane (`ims-control`): the REST API over a SQLite or PostgreSQL store, with
//! JWT authentication and admin/viewer roles.
//!
//! Layout: [`db`] (pool, migrations, error mapping), [`model`] (enumerations), [`store`]
//! (queries per resource), [`auth`] (passwords, tokens, extractors), [`api`] (routes and the
//! OpenAPI document), [`state`] (what handlers share), [`error`] (problem documents),
//! [`config`] (settings of `ims-control serve`), [`server`] (HTTP/HTTPS serving and first-start
//! set-up), [`metrics`] (Prometheus), [`ratelimit`] (login throttling and the time source),
//! [`security`] (request body limits and security headers),
//! [`uplink`] (the QUIC server edges enrol with and connect to: CA, join tokens, sessions),
//! [`o2ims`] (the O-RAN O2ims inventory API toward the SMO), [`ui`] (the operators' web UI).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod metrics;
pub mod model;
pub mod o2ims;
pub mod ratelimit;
pub mod security;
pub mod server;
pub mod state;
pub mod store;
pub mod ui;
pub mod uplink;
