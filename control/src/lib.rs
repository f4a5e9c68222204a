//! The control plane (`ims-control`).
//!
//! Not built yet: the REST API, store, authentication, CA and QUIC server arrive with the
//! control-plane issue. The crate exists so the workspace has its final shape; it exports nothing.
#![forbid(unsafe_code)]
