//! The edge uplink, control-plane side: a QUIC server (quinn, rustls with `ring`, mutual TLS)
//! that enrols edges with one-time join tokens and then serves each edge's session: heartbeats,
//! the site's machines, boot profiles and subnets (a snapshot, then deltas within a second of a
//! change), and the edge's events, recorded exactly once. The protocol is `ims-proto`; the
//! shared contract is `notes/uplink.md`.
//!
//! Modules:
//! * [`ca`]: the CA in the store, the QUIC server certificate, worker certificates from CSRs;
//! * [`identity`]: worker ids, certificate names, reading a peer certificate (pure);
//! * [`tokens`]: join tokens (`IMS1.<secret>.<CA fingerprint>`), issued and consumed once;
//! * [`registry`]: enrolled workers' certificates, their standing, revocation;
//! * [`revs`]: the `config_rev` / `revoke_rev` counters and the one task per process that
//!   polls them;
//! * [`snapshot`]: a site's desired state from the store, and a per-site cache;
//! * [`events`]: what each edge event changes (pure) and recording batches exactly once;
//! * [`session`]: the session's decisions (pure);
//! * [`tls`]: rustls/quinn configuration;
//! * [`wire`]: framed messages over quinn streams;
//! * [`server`]: the endpoint and the accept loop; `enroll` and `conn` drive enrolment and
//!   uplink connections.
//!
//! Running it: `ims-control serve --quic-listen ADDR` ([`UplinkServer`]); operators make join
//! tokens with `ims-control join-token --site NAME` ([`tokens::issue`]) and revoke workers with
//! `ims-control worker revoke ID` ([`registry::revoke`]).

pub mod ca;
mod conn;
mod enroll;
pub mod events;
pub mod identity;
pub mod registry;
pub mod revs;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod tokens;
pub mod wire;

pub use ca::Ca;
pub use server::{DEFAULT_QUIC_LISTEN, UplinkError, UplinkServer, UplinkSettings};
