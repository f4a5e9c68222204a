//! A DHCPv4 load generator: many simulated clients, each with its own MAC, doing full DORA
//! (DISCOVER → OFFER → REQUEST → ACK) against a server, either as a relay agent (UDP, `giaddr`
//! set) or directly on the link (broadcast Ethernet frames from each client's MAC).
//!
//! - [`packet`]: the client side of the wire format and the broadcast framing (pure).
//! - [`engine`]: the sans-IO [`Generator`]: pacing, retransmission, reply matching.
//! - [`report`]: counters, DORA/s and latency percentiles.
//!
//! The `dhcp-load` binary is the driver: sockets, the clock and the event loop.

pub mod engine;
pub mod packet;
pub mod report;

pub use engine::{ConfigError, Generator, LoadConfig, Transmit};
pub use packet::Addressing;
pub use report::{Counters, Latency, Report};
