//! `ims-lab`: a virtual edge site on this machine, and the boot-storm benchmark.
//!
//! [`run`] builds the site ([`netns`]), starts `ims-control` with SQLite in a temporary
//! directory ([`control`]), registers the machines over REST, enrols and starts `netbootd`
//! ([`edge`]), and boots every machine as PXE firmware would ([`machine`], [`pxe_dhcp`]):
//! DHCP, TFTP of the boot file, the iPXE script, kernel and initrd over HTTP, phone-home; then
//! it waits until the REST API shows every machine `ACTIVE`. With [`LabConfig::qemu`], some of
//! the machines are real QEMU machines on taps in the site's bridge ([`qemu_lab`], on top of
//! [`qemu`], which the real-firmware e2e test shares). With `compare_dnsmasq` the same
//! machines also fetch their boot file once through netbootd and once through dnsmasq (in the
//! same edge namespace, after netbootd stopped), with each server's CPU time and peak RSS
//! ([`compare`]). [`progress`] draws the bars and the final table.
//!
//! The work runs on a thread inside the client namespace; the calling thread draws progress,
//! forwards the UI to the host's loopback ([`forward`]) and watches the cancel flag (set on
//! SIGINT/SIGTERM by the binary). Teardown is by ownership: child processes are stopped by PID
//! when their handles drop (on the worker), then the namespaces and the temporary directory
//! are removed (by the caller), whatever way the run ends.
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

pub mod compare;
pub mod control;
pub mod edge;
pub mod forward;
pub mod machine;
pub mod netns;
pub mod procs;
pub mod progress;
pub mod pxe_dhcp;
pub mod qemu;
pub mod qemu_lab;
mod worker;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ims_proto::MacAddr;

pub use edge::FileSizes;
use progress::{PHASES, Phase, Progress};

/// Why the lab stopped early.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Building the site or starting a process failed.
    #[error("setting up the lab: {0}")]
    Setup(String),
    /// The control plane refused or did not answer a request.
    #[error("ims-control: {0}")]
    Control(String),
    /// A step did not finish in its time bound.
    #[error("{0}")]
    Timeout(String),
    /// The run finished, but not every machine made it.
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// SIGINT or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Preparing or running a QEMU machine failed (`--qemu`).
    #[error("QEMU machines: {0}")]
    Qemu(#[from] qemu::QemuError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Machines in all: simulated ones, and [`LabConfig::qemu`]'s count of real QEMU machines
    /// among them.
    pub machines: usize,
    /// Boot this many of the machines as real QEMU machines ([`qemu_lab`]).
    pub qemu: Option<qemu_lab::QemuMachines>,
    /// Keep the site running after the boot until cancelled.
    pub keep: bool,
    /// Also boot the machines through dnsmasq and compare (needs `dnsmasq`).
    pub dnsmasq: Option<PathBuf>,
    /// The `netbootd` binary.
    pub netbootd: PathBuf,
    /// The `ims-control` binary.
    pub ims_control: PathBuf,
    /// Sizes of boot file, kernel and initrd.
    pub sizes: FileSizes,
    /// TFTP block size the machines ask for.
    pub blksize: u16,
    /// TFTP window size the machines ask for.
    pub windowsize: u16,
    /// Bound of each boot round, and of the wait for ACTIVE.
    pub max_time: Duration,
    /// Preferred host port of the UI forwarder.
    pub ui_port: u16,
    /// Scattered rather than sequential MACs (see [`machine_macs`]).
    pub scatter_macs: bool,
}

/// The machines' MACs: `52:54:00:XX:YY:ZZ` (QEMU's prefix). Sequential (`…:1a:00:01`,
/// `…:1a:00:02`, …) as NICs of one delivery batch are, or with `scatter` spread over the 24 low
/// bits (index × an odd constant, so still distinct), which defeats servers whose address
/// choice hashes the MAC badly.
pub fn machine_macs(n: usize, scatter: bool) -> Vec<MacAddr> {
    (0..n)
        .map(|i| {
            let i = i as u32 & 0x00ff_ffff;
            let low = if scatter {
                i.wrapping_mul(0x009e_3779) & 0x00ff_ffff
            } else {
                i | 0x001a_0000
            };
            let b = low.to_be_bytes();
            MacAddr([0x52, 0x54, 0x00, b[1], b[2], b[3]])
        })
        .collect()
}

/// Messages from the worker to the screen.
#[derive(Debug, Default)]
pub struct Screen {
    lines: Mutex<Vec<String>>,
    phases: Mutex<Vec<Phase>>,
    started: Mutex<Option<Instant>>,
}

impl Screen {
    /// Print `line` above the bars.
    pub fn say(&self, line: impl Into<String>) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.into());
    }

    /// Show bars for `phases` from now on (empty: none), timed from now.
    pub fn bars(&self, phases: &[Phase]) {
        *self.phases.lock().unwrap_or_else(PoisonError::into_inner) = phases.to_vec();
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn take(&self) -> (Vec<String>, Vec<Phase>, Duration) {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner));
        let phases = self
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let elapsed = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        (lines, phases, elapsed)
    }
}

/// The temporary directory of a run, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Build the site, boot the machines, print progress and the final table to `out`; tear
/// everything down before returning. `cancel` ends the run early (SIGINT/SIGTERM).
///
/// # Errors
/// Any [`LabError`]; the site is gone by then too.
pub fn run(
    config: &LabConfig,
    cancel: &Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<(), LabError> {
    if config.machines == 0 || config.machines > 30_000 {
        return Err(LabError::Setup(
            "--machines must be 1–30000 (the dynamic range holds 32,766 addresses)".to_owned(),
        ));
    }
    for ns in netns::stale_namespaces() {
        let _ = writeln!(
            out,
            "removing namespace {ns} left by an earlier ims-lab run"
        );
        netns::remove_stale(&ns);
        // …and that run's temporary directory.
        if let Some(pid) = ns
            .strip_prefix(netns::NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        {
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("ims-lab-{pid}")));
        }
    }
    if let Some(q) = &config.qemu
        && (q.count == 0 || q.count > 32 || q.count > config.machines)
    {
        return Err(LabError::Setup(
            "--qemu K must be 1–32 and at most --machines".to_owned(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("ims-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| LabError::Setup(format!("create {}: {e}", dir.display())))?;
    let tmp = TempDir(dir.clone());
    if let Some(q) = &config.qemu {
        // Here, in the host's namespace: `apt-get download` needs the mirror.
        let _ = writeln!(
            out,
            "ims-lab: preparing {} QEMU machine(s) (kernel and busybox from Debian, cached)",
            q.count
        );
        let line = qemu_lab::prepare(&dir.join("root"), &q.cache_base)?;
        let _ = writeln!(out, "{line}");
    }
    let site = netns::Site::create()?;
    let password = control::generate_password()?;
    let result = run_in_site(config, &site, &tmp.0, &password, cancel, out);
    drop(site);
    if config.keep && config.qemu.is_some() {
        keep_consoles(&dir.join("qemu"), out);
    }
    drop(tmp);
    result
}

/// `--keep` with `--qemu`: copy the serial consoles out of the temporary directory before it
/// is removed, to `$TMPDIR/ims-lab-<pid>-consoles`.
fn keep_consoles(from: &Path, out: &mut dyn Write) {
    let to = std::env::temp_dir().join(format!("ims-lab-{}-consoles", std::process::id()));
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    if std::fs::create_dir_all(&to).is_err() {
        return;
    }
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if let Some(name) = path.file_name()
            && path.to_string_lossy().ends_with(".log")
        {
            let _ = std::fs::copy(&path, to.join(name));
        }
    }
    let _ = writeln!(
        out,
        "ims-lab: --keep: QEMU consoles kept in {}",
        to.display()
    );
}

fn run_in_site(
    config: &LabConfig,
    site: &netns::Site,
    dir: &Path,
    password: &str,
    cancel: &Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<(), LabError> {
    let forwarder = forward::Forwarder::start(config.ui_port, &site.site_ns, control::rest_addr())
        .map_err(|e| LabError::Setup(format!("UI forwarder on 127.0.0.1: {e}")))?;
    let _ = writeln!(
        out,
        "ims-lab: {} machines{} on a virtual edge site (namespaces {}, {}, {})\n  \
         UI:    http://{}/   (inside the site: http://{}/)\n  \
         login: admin / {password}\n  files: {}",
        config.machines,
        config.qemu.as_ref().map_or_else(String::new, |q| format!(
            " ({} real QEMU, {} simulated)",
            q.count,
            config.machines - q.count
        )),
        site.site_ns,
        site.edge_ns,
        site.client_ns,
        forwarder.local,
        control::rest_addr(),
        dir.display()
    );
    let progress = Arc::new(Progress::new(config.machines as u64));
    let screen = Arc::new(Screen::default());
    let job = worker::Job {
        config: config.clone(),
        dir: dir.to_owned(),
        password: password.to_owned(),
        site_ns: site.site_ns.clone(),
        edge_ns: site.edge_ns.clone(),
        client_ns: site.client_ns.clone(),
        progress: Arc::clone(&progress),
        screen: Arc::clone(&screen),
        cancel: Arc::clone(cancel),
    };
    let handle = std::thread::Builder::new()
        .name("ims-lab-worker".to_owned())
        .spawn(move || job.run())
        .map_err(|e| LabError::Setup(format!("cannot start the worker thread: {e}")))?;
    let tty = std::io::stdout().is_terminal();
    let mut drawn = 0usize;
    let mut last_plain = Instant::now();
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        let (lines, phases, elapsed) = screen.take();
        let bars = progress::render(&progress, &phases, elapsed);
        if tty {
            if drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A\x1b[J");
            }
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = write!(out, "{bars}");
            drawn = if phases.is_empty() {
                0
            } else {
                bars.lines().count()
            };
        } else {
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
            if !phases.is_empty() && last_plain.elapsed() >= Duration::from_secs(5) {
                let _ = write!(out, "{bars}");
                last_plain = Instant::now();
            }
        }
        let _ = out.flush();
    }
    let result = handle
        .join()
        .unwrap_or_else(|_| Err(LabError::Setup("the worker thread panicked".to_owned())));
    let (lines, _, _) = screen.take();
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    drop(forwarder);
    if cancel.load(Ordering::Relaxed) && result.is_ok() {
        return Ok(());
    }
    result
}

/// The phases shown while the machines boot.
pub fn boot_phases() -> Vec<Phase> {
    PHASES
        .iter()
        .copied()
        .filter(|p| *p != Phase::Register)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn macs_are_distinct_unicast() {
        for scatter in [false, true] {
            let macs = machine_macs(30_000, scatter);
            let set: BTreeSet<_> = macs.iter().map(MacAddr::octets).collect();
            assert_eq!(set.len(), 30_000);
            assert!(macs.iter().all(|m| !m.is_multicast()));
        }
        assert_eq!(
            machine_macs(2, false)[1].to_string().to_ascii_lowercase(),
            "52:54:00:1a:00:01"
        );
    }
}
