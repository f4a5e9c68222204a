//! `netbootd`, the edge netboot daemon, as a library.
//!
//! # Layout
//!
//! Pure (no sockets, no clocks, no `unsafe`; driven by `handle_*(now, …)` / `poll_*`):
//! - [`dhcp`]: the DHCPv4 server core, its wire format, Ethernet/IPv4/UDP framing, address
//!   pools, leases and the PXE boot-file decision.
//! - [`config`]: the TOML file, parsed into raw types then validated into the types cores use.
//!
//! Impure (the only code that touches the OS):
//! - [`store`]: the LMDB lease journal (and an in-memory twin for tests and benches).
//! - [`io`]: raw AF_PACKET sockets, the relay UDP socket and the DHCP driver loop with group
//!   commit. The only module where `unsafe` is allowed.
//! - [`metrics`]: the Prometheus exporter, fed from the cores' plain `Stats` structs.

pub mod config;
pub mod dhcp;
pub mod io;
pub mod metrics;
pub mod store;
pub mod tftp;
