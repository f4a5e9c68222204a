//! The edge side of the uplink to the control plane (pure parts).
//!
//! The uplink is one QUIC connection with mutual TLS from the edge to `ims-control`, carrying
//! the messages of `ims_proto` (see its docs for the conversation). This module decides; the
//! driver in [`crate::io::uplink`] connects, moves frames, reads the clock and the store.
//!
//! - [`session`]: the state machine ([`Session`]): connect, Hello/Welcome, heartbeats, outbox
//!   batches and acknowledgements, snapshots and deltas, reconnection with backoff.
//! - [`backoff`]: jittered exponential backoff from a seeded generator.
//! - [`outbox`]: stored events ([`crate::store::events::Event`]) to wire events.
//! - [`apply`]: what the edge serves once it holds a snapshot (the file's settings with the
//!   snapshot's machines, boot profiles and subnets).
//! - [`health`]: service states and errors reported in heartbeats.
//! - [`token`]: join tokens and CA fingerprints (enrolment).
#![forbid(unsafe_code)]

pub mod apply;
pub mod backoff;
pub mod health;
pub mod outbox;
pub mod session;
pub mod token;

#[cfg(test)]
mod tests;

pub use apply::{Effective, effective_dhcp};
pub use backoff::{Backoff, BackoffConfig};
pub use health::{ServiceErrorReport, ServiceHealth};
pub use session::{Command, Phase, Session, SessionConfig, SessionStats};
pub use token::JoinToken;
