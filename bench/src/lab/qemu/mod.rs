//! Real firmware: QEMU machines that PXE-boot through `netbootd`, used by `ims-lab --qemu K`
//! and by the real-firmware e2e test (`netboot/tests/qemu_e2e.rs`).
//!
//! - [`Prerequisites::check`]: QEMU, the iPXE option ROMs (`ipxe-qemu`), the iPXE EFI binary
//!   (`ipxe`), OVMF, `/dev/net/tun` and the apt tools must be there; a missing one is an error
//!   naming the Debian package to install (never a silent skip).
//! - [`net`]: a [`net::Tap`] for QEMU on a bridge, a [`net::Lan`] (a new bridge joining a
//!   namespace's uplink and a tap), and a [`net::RouterAdvertiser`] so iPXE does not wait for
//!   an IPv6 router.
//! - [`vm`]: one QEMU run ([`vm::Qemu`]: SeaBIOS + the NIC's iPXE ROM, or OVMF's own PXE) on a
//!   tap, serial console to a file, `-no-reboot`; every wait is bounded and the process is
//!   killed by its PID on drop.
//! - [`payload`]: the boot payload (Debian kernel, busybox initramfs that phones home).
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

pub mod net;
pub mod payload;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use net::{Lan, RouterAdvertiser, Tap};
pub use payload::{INIT_FAILED, PHONE_HOME_OK, Payload, TOKEN_ARG};
pub use vm::{Firmware, Qemu};

/// The QEMU binary (Debian `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";
/// Where Debian's `ipxe-qemu` puts the NICs' option ROMs (QEMU looks there by itself).
pub const IPXE_QEMU_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
/// iPXE for UEFI firmware that chains from the NIC's own driver (Debian `ipxe`).
pub const SNPONLY_EFI: &str = "/usr/lib/ipxe/snponly.efi";
/// iPXE for legacy PXE ROMs (Debian `ipxe`).
pub const UNDIONLY_KPXE: &str = "/usr/lib/ipxe/undionly.kpxe";
/// OVMF code (Debian `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The OVMF variable store template; each run works on a copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What went wrong preparing or running a QEMU machine.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// Tools or firmware files are not installed.
    #[error(
        "real QEMU machines need tools and firmware that are not installed:\n  {0}\n\
         Install them with `apt-get install --no-install-recommends qemu-system-x86 ipxe-qemu \
         ipxe ovmf` (.ci/run does it)."
    )]
    Missing(String),
    /// A command failed, or ran past its time bound (then it was killed).
    #[error("{0}")]
    Command(String),
    /// A file or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel and busybox packages could not be turned into a boot payload.
    #[error("boot payload: {0}")]
    Payload(String),
    /// The machine did not boot as expected (with the tails of its console and QEMU's log).
    #[error("{0}")]
    Boot(String),
}

/// A `map_err` helper: `what` failed on `path`.
pub(crate) fn io_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> QemuError {
    let path = path.to_path_buf();
    move |source| QemuError::Io { what, path, source }
}

/// The absolute path of a system tool: from `PATH`, else from the sbin/bin directories a root
/// shell's `PATH` may lack.
///
/// # Errors
/// [`QemuError::Missing`] when it is nowhere.
pub fn find_tool(name: &str) -> Result<PathBuf, QemuError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| QemuError::Missing(format!("{name} is not in PATH")))
}

/// Run `cmd` (stdin closed) to completion and return its stdout; killed by PID after
/// `timeout`.
///
/// # Errors
/// It cannot start, exits unsuccessfully (stdout and stderr in the message) or runs too long.
pub fn run_tool(cmd: &mut Command, timeout: Duration) -> Result<String, QemuError> {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| QemuError::Command(format!("cannot start `{line}`: {e}")))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| QemuError::Command(format!("`{line}`: {e}")))?,
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = rx.recv_timeout(Duration::from_secs(5));
            return Err(QemuError::Command(format!(
                "`{line}` did not finish within {timeout:?}: killed"
            )));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(QemuError::Command(format!(
            "`{line}` failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The tools and firmware files QEMU machines need, each with its Debian package.
#[derive(Debug)]
pub struct Prerequisites;

impl Prerequisites {
    /// Check that everything is installed.
    ///
    /// # Errors
    /// [`QemuError::Missing`] listing every missing tool or file with its Debian package.
    pub fn check() -> Result<Self, QemuError> {
        let mut missing = Vec::new();
        for (name, package) in [
            (QEMU, "qemu-system-x86"),
            ("apt-get", "apt"),
            ("apt-cache", "apt"),
            ("dpkg-deb", "dpkg"),
        ] {
            if find_tool(name).is_err() {
                missing.push(format!("{name} (Debian package {package})"));
            }
        }
        for (file, package) in [
            (IPXE_QEMU_ROM, "ipxe-qemu"),
            (SNPONLY_EFI, "ipxe"),
            (UNDIONLY_KPXE, "ipxe"),
            (OVMF_CODE, "ovmf"),
            (OVMF_VARS, "ovmf"),
        ] {
            if !Path::new(file).is_file() {
                missing.push(format!("{file} (Debian package {package})"));
            }
        }
        if !Path::new("/dev/net/tun").exists() {
            missing.push(
                "/dev/net/tun (QEMU's tap device: `modprobe tun`, or give a container \
                 --device /dev/net/tun)"
                    .to_owned(),
            );
        }
        if missing.is_empty() {
            Ok(Self)
        } else {
            Err(QemuError::Missing(missing.join("\n  ")))
        }
    }
}

/// Which accelerator QEMU uses.
///
/// TCG is the default even where `/dev/kvm` exists: on nested-virtualisation hosts (such as this
/// project's CI VMs) KVM is present but a Linux guest hangs right after "Probing EDD", while
/// TCG is fast enough for a netboot to phone-home.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation.
    #[default]
    Tcg,
    /// The kernel's hypervisor (`/dev/kvm`).
    Kvm,
}

impl Accel {
    /// Parse `kvm` or `tcg`; KVM only where `/dev/kvm` exists.
    ///
    /// # Errors
    /// Another word, or `kvm` without `/dev/kvm`.
    pub fn parse(s: &str) -> Result<Self, QemuError> {
        match s {
            "tcg" => Ok(Self::Tcg),
            "kvm" if Path::new("/dev/kvm").exists() => Ok(Self::Kvm),
            "kvm" => Err(QemuError::Missing(
                "/dev/kvm (asked for KVM; use TCG instead)".to_owned(),
            )),
            other => Err(QemuError::Command(format!(
                "accelerator {other:?}: use kvm or tcg"
            ))),
        }
    }

    /// `IMS_QEMU_ACCEL=kvm|tcg`, TCG when unset.
    ///
    /// # Errors
    /// As [`Accel::parse`].
    pub fn from_env() -> Result<Self, QemuError> {
        std::env::var("IMS_QEMU_ACCEL").map_or(Ok(Self::Tcg), |v| Self::parse(&v))
    }

    /// QEMU's name for it (`-accel NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}
