//! The control plane (`ims-control`): the REST API over a SQLite or PostgreSQL store, with
//! JWT authentication and admin/viewer roles.
//!
//! Layout: [`db`] (pool, migrations, error mapping), [`model`] (enumerations), [`store`]
//! (queries per resource), [`auth`] (passwords, tokens, extractors), [`api`] (routes and the
//! OpenAPI document), [`state`] (what handlers share), [`error`] (problem documents).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod db;
pub mod error;
pub mod model;
pub mod state;
pub mod store;
