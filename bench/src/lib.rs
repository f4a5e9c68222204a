//! Benchmarks and load generators for `netbootd` and `ims-control`.
//!
//! - [`dhcp_load`]: the DHCPv4 DORA load generator behind the `dhcp-load` binary, which
//!   `bench/dhcp-compare.sh` runs against netbootd, ISC Kea and dnsmasq side by side.
//! - [`tftp_storm`]: the TFTP storm generator behind the `tftp-storm` binary, which
//!   `bench/tftp-compare.sh` runs against netbootd, dnsmasq and tftpd-hpa side by side.
//! - [`api_bench`]: REST load on `ims-control` (machine creation, 10,000-machine listings),
//!   behind the `api-bench` binary and `bench/api-compare.sh` (SQLite and PostgreSQL).
//! - [`lab`]: `ims-lab`, a virtual edge site in network namespaces (ims-control, an enrolled
//!   netbootd, simulated PXE machines booting to ACTIVE, and with `--qemu K` real QEMU machines
//!   among them) and the boot-storm comparison with dnsmasq. `lab::qemu` (QEMU runner, boot
//!   payload) is shared with the real-firmware e2e test of `ims-netboot`.
//! - [`uplink_bench`]: thousands of simulated edges enrolling and heartbeating over the QUIC
//!   uplink of one `ims-control`, behind the `uplink-bench` binary and `bench/uplink-bench.sh`.
#![forbid(unsafe_code)]

pub mod api_bench;
pub mod dhcp_load;
pub mod lab;
pub mod tftp_storm;
pub mod uplink_bench;

/// Append "; generator CPU X s (Y% of one core)" to a summary line when the generator measured
/// its own CPU time over a run of `elapsed_s` seconds.
///
/// # Errors
/// Whatever the formatter returns.
pub fn write_generator_cpu(
    f: &mut std::fmt::Formatter<'_>,
    cpu_s: Option<f64>,
    elapsed_s: f64,
) -> std::fmt::Result {
    let Some(cpu) = cpu_s else {
        return Ok(());
    };
    let pct = if elapsed_s > 0.0 {
        cpu / elapsed_s * 100.0
    } else {
        0.0
    };
    write!(f, "; generator CPU {cpu:.2} s ({pct:.0}% of one core)")
}
