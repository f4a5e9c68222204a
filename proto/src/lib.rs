//! Types shared by the edge daemon (`netbootd`) and the control plane (`ims-control`).
//!
//! This crate is pure: no sockets, no clocks, no async. It holds the identifiers both sides
//! agree on (such as [`MacAddr`]). The versioned edge ↔ control-plane messages join it with the
//! uplink.
#![forbid(unsafe_code)]

mod types;

pub use types::{MacAddr, ParseMacError};
