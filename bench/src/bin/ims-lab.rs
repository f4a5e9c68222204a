//! `ims-lab`: a virtual edge site on this machine (network namespaces, `ims-control`, an
//! enrolled `netbootd`, simulated PXE machines booting to ACTIVE), and with `--compare dnsmasq`
//! the boot-storm benchmark. Run as root:
//!
//! ```text
//! cargo run --release -p ims-bench --bin ims-lab -- --machines 50
//! cargo run --release -p ims-bench --bin ims-lab -- --machines 500 --compare dnsmasq
//! cargo run --release -p ims-bench --bin ims-lab -- --machines 3 --qemu 1
//! ```
//!
//! With `--qemu K`, K of the N machines are real QEMU machines (SeaBIOS + iPXE ROM, a Debian
//! kernel and a busybox initramfs that phones home; see `ims_bench::lab::qemu_lab`) and N−K
//! stay simulated; N is raised to K when smaller.
//!
//! `netbootd` and `ims-control` are taken from next to this binary; under `cargo run` they are
//! built first (same profile and target directory) unless `--no-build` is given. Ctrl-C
//! (SIGINT) or SIGTERM tears everything down: processes, namespaces, temporary files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ims_bench::lab::qemu::{Accel, find_tool};
use ims_bench::lab::qemu_lab::QemuMachines;
use ims_bench::lab::{self, FileSizes, LabConfig, LabError};

/// A virtual edge site and boot-storm benchmark (run as root).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Machines to register and boot (with --qemu K: K real QEMU machines and N−K simulated
    /// ones; N is raised to K if smaller).
    #[arg(long, default_value_t = 50, value_name = "N")]
    machines: usize,
    /// Keep the site running after the boot until Ctrl-C (to look at the UI).
    #[arg(long)]
    keep: bool,
    /// Boot K of the N machines as real QEMU machines (1–32; SeaBIOS + the NIC's iPXE ROM on
    /// taps in the site's bridge, a Debian kernel and busybox initramfs fetched once with
    /// `apt-get download` into target/PROFILE/qemu-e2e-cache or $IMS_QEMU_E2E_CACHE). Needs
    /// qemu-system-x86, ipxe-qemu, ipxe and ovmf. Serial consoles are in the lab's directory
    /// (copied out with --keep).
    #[arg(long, value_name = "K")]
    qemu: Option<usize>,
    /// QEMU accelerator for --qemu: tcg (default; works everywhere) or kvm (needs /dev/kvm).
    #[arg(long, default_value = "tcg", value_name = "ACCEL")]
    accel: String,
    /// Also boot the machines (DHCP + TFTP) through another server and compare.
    #[arg(long, value_name = "SERVER")]
    compare: Option<Server>,
    /// Size of the TFTP boot file, KiB.
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    boot_file_kib: u64,
    /// Size of the kernel, MiB.
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    kernel_mib: u64,
    /// Size of the initrd, MiB.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    initrd_mib: u64,
    /// TFTP block size the machines ask for (UEFI asks 1468 on Ethernet).
    #[arg(long, default_value_t = 1468, value_name = "BYTES")]
    blksize: u16,
    /// TFTP window size the machines ask for (EDK2's default is 4).
    #[arg(long, default_value_t = 4, value_name = "BLOCKS")]
    windowsize: u16,
    /// Bound of each boot round and of the wait for ACTIVE, seconds.
    #[arg(long, default_value_t = 300, value_name = "S")]
    max_seconds: u64,
    /// Spread the machines' MACs over 24 bits instead of numbering them sequentially.
    #[arg(long)]
    scatter_macs: bool,
    /// Host port for the UI (127.0.0.1; another one if taken).
    #[arg(long, default_value_t = 8000, value_name = "PORT")]
    ui_port: u16,
    /// The netbootd binary (default: next to ims-lab).
    #[arg(long, value_name = "PATH")]
    netbootd: Option<PathBuf>,
    /// The ims-control binary (default: next to ims-lab).
    #[arg(long, value_name = "PATH")]
    ims_control: Option<PathBuf>,
    /// Do not run `cargo build` for netbootd and ims-control under `cargo run`.
    #[arg(long)]
    no_build: bool,
}

/// Servers to compare with.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Server {
    /// dnsmasq (Debian: dnsmasq-base).
    Dnsmasq,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ims-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("ims-lab creates network namespaces and raw sockets: run it as root (sudo)");
    }
    if args.blksize < 8 || args.windowsize == 0 || args.max_seconds == 0 {
        bail!("--blksize must be at least 8, --windowsize and --max-seconds at least 1");
    }
    let here = std::env::current_exe().context("locating ims-lab itself")?;
    let dir = here.parent().context("ims-lab has no parent directory")?;
    if args.netbootd.is_none() && args.ims_control.is_none() && !args.no_build {
        build_siblings(dir)?;
    }
    let netbootd = binary(args.netbootd.as_deref(), dir, "netbootd", "ims-netboot")?;
    let ims_control = binary(
        args.ims_control.as_deref(),
        dir,
        "ims-control",
        "ims-control",
    )?;
    let dnsmasq = match args.compare {
        Some(Server::Dnsmasq) => Some(
            find_tool("dnsmasq")
                .ok()
                .context("--compare dnsmasq needs dnsmasq: apt-get install dnsmasq-base")?,
        ),
        None => None,
    };
    let qemu = match args.qemu {
        Some(count) => Some(QemuMachines {
            count,
            accel: Accel::parse(&args.accel).context("--accel")?,
            cache_base: dir.to_path_buf(),
        }),
        None => None,
    };
    let config = LabConfig {
        machines: args.machines.max(args.qemu.unwrap_or(0)),
        qemu,
        keep: args.keep,
        dnsmasq,
        netbootd,
        ims_control,
        sizes: FileSizes {
            boot_file: args.boot_file_kib * 1024,
            kernel: args.kernel_mib << 20,
            initrd: args.initrd_mib << 20,
        },
        blksize: args.blksize,
        windowsize: args.windowsize,
        max_time: Duration::from_secs(args.max_seconds),
        ui_port: args.ui_port,
        scatter_macs: args.scatter_macs,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&cancel))?;
    let mut out = std::io::stdout();
    match lab::run(&config, &cancel, &mut out) {
        Ok(()) => {
            writeln!(
                out,
                "ims-lab: torn down (namespaces, processes, temporary files)"
            )?;
            Ok(())
        }
        Err(LabError::Interrupted) => {
            writeln!(out, "ims-lab: interrupted; torn down")?;
            Ok(())
        }
        Err(e) => Err(e).context("the lab failed (everything it started was torn down)"),
    }
}

/// SIGINT or SIGTERM set `cancel`; a second one exits at once.
fn watch_signals(cancel: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if cancel.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
                let _ = writeln!(std::io::stderr(), "\nims-lab: stopping, tearing down…");
            }
        });
    });
    Ok(())
}

/// Under `cargo run` (which sets `CARGO`), build netbootd and ims-control into the same target
/// directory and profile as ims-lab.
fn build_siblings(dir: &Path) -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let Some(target) = dir.parent() else {
        return Ok(());
    };
    let release = dir.file_name().is_some_and(|n| n == "release");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .env("CARGO_TARGET_DIR", target)
        .args([
            "build",
            "-p",
            "ims-netboot",
            "--bin",
            "netbootd",
            "-p",
            "ims-control",
            "--bin",
            "ims-control",
        ]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "ims-lab: building netbootd and ims-control (cargo build{})",
        if release { " --release" } else { "" }
    );
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of netbootd and ims-control failed ({status})");
    }
    Ok(())
}

fn binary(given: Option<&Path>, dir: &Path, name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = given.map_or_else(|| dir.join(name), Path::to_path_buf);
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "{} not found: build it (cargo build --release -p {package}) or give --{name} PATH",
        path.display()
    )
}
