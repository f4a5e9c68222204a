//! Drivers: the only code that touches the OS, and the only place `unsafe` is allowed.
//!
//! Drivers are thin: read from a socket, hand the bytes to a sans-IO core with the current time
//! (`core.handle_*(now, …)`), drain the core's commands (`poll_command`) and execute them in
//! order, re-arm the timer from `poll_timeout`. Protocol decisions never live here.
//!
//! - [`raw_socket`]: AF_PACKET sockets with a kernel BPF filter, one per served interface.
//! - [`udp`]: the UDP port 67 socket for requests forwarded by relay agents.
//! - [`dhcp_driver`]: the DHCP loop, with group commit of leases before their ACKs go out.
//! - [`privileges`]: dropping root and every capability but `CAP_NET_RAW` once sockets are
//!   open.
//! - [`root`]: opening boot files confined beneath the served root (`openat2`).
//! - [`tftp`]: the TFTP service: file cache, and the io_uring and plain-tokio drivers.
//! - [`uplink`]: the QUIC uplink to the control plane (mutual TLS), enrolment and identity.
pub mod dhcp_driver;
pub(crate) mod lmdb_env;
pub mod privileges;
pub mod raw_socket;
pub mod root;
pub mod tftp;
pub mod udp;
pub mod uplink;
