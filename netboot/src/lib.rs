//! `netbootd`, the edge netboot daemon, as a library.
//!
//! # Layout
//!
//! Pure (no sockets, no clocks, no `unsafe`; driven by `handle_*(now, …)` / `poll_*`):
//! - [`dhcp`]: the DHCPv4 server core, its wire format, Ethernet/IPv4/UDP framing, address
//!   pools, leases and the PXE boot-file decision.
//! - [`tftp`]: the TFTP server core: request admission, option negotiation, the windowed
//!   transfer state machine, path normalisation and netascii.
//! - [`config`]: the TOML file, parsed into raw types then validated into the types cores use.
//! - [`ratelimit`]: per-client token buckets (per-MAC DHCP, per-IP TFTP request limits).
//! - [`uplink`]: the edge side of the uplink to the control plane: the session state machine,
//!   backoff, the outbox mapping and what a snapshot from the control plane changes.
//!
//! Impure (the only code that touches the OS):
//! - [`store`]: the LMDB lease journal (and an in-memory twin for tests and benches) and the
//!   durable edge event log.
//! - [`io`]: raw AF_PACKET sockets, the relay UDP socket and the DHCP driver loop with group
//!   commit; the TFTP drivers (io_uring and tokio) with the shared file cache; the confined
//!   file opener. The only module where `unsafe` is allowed.
//! - [`http`]: the HTTP boot server (files with Range, per-machine iPXE scripts, phone-home).
//! - [`metrics`]: the Prometheus exporter, fed from the cores' plain `Stats` structs.
//! - [`readiness`]: which enabled services are serving yet, for `/readyz`.
//! - [`http`]: the HTTP boot server (boot files, per-machine iPXE scripts, phone-home).

pub mod config;
pub mod dhcp;
pub mod http;
pub mod io;
pub mod metrics;
pub mod ratelimit;
pub mod readiness;
pub mod store;
pub mod tftp;
pub mod uplink;
