//! A TFTP storm generator: many simulated clients, each with its own UDP socket, fetching the
//! same file at once with a chosen block and window size, as a rack of machines booting together
//! would.
//!
//! - [`packet`]: read requests and ACKs out, DATA/OACK/ERROR in (pure).
//! - [`client`]: one client's sans-IO state machine (RFC 1350 with the RFC 7440 window).
//! - [`storm`]: the [`Storm`] of N clients: starts, timeouts, the report.
//! - [`report`]: counts, aggregate MB/s and completion-time percentiles.
//!
//! The `tftp-storm` binary is the driver: one non-blocking socket per client, a single epoll
//! loop, and DATA received with `MSG_TRUNC` into a small buffer so the generator counts the
//! payload without copying it (unless `--verify` compares it with the file).

pub mod client;
pub mod packet;
pub mod report;
pub mod storm;

pub use client::{Client, ClientParams, Failure, Payload, State, Target, Transmit};
pub use packet::RequestOptions;
pub use report::{StormCounters, StormReport};
pub use storm::{Storm, StormConfig};

#[cfg(test)]
mod tests;
