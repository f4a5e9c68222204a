//! Benchmarks and load generators for `netbootd`.
//!
//! - [`dhcp_load`]: the DHCPv4 DORA load generator behind the `dhcp-load` binary, which
//!   `bench/dhcp-compare.sh` runs against netbootd, ISC Kea and dnsmasq side by side.
//! - [`tftp_storm`]: the TFTP storm generator behind the `tftp-storm` binary, which
//!   `bench/tftp-compare.sh` runs against netbootd, dnsmasq and tftpd-hpa side by side.
#![forbid(unsafe_code)]

pub mod dhcp_load;
pub mod tftp_storm;
