//! Real firmware for end-to-end tests: QEMU machines that PXE-boot through netbootd (their
//! boot payload is built by [`super::payload`]).
//!
//! - [`Prerequisites::check`]: QEMU, the iPXE option ROMs (`ipxe-qemu`), the iPXE EFI binary
//!   (`ipxe`), OVMF, `/dev/net/tun` and the apt tools must be there; a missing one fails the test
//!   with the Debian package to install (never a silent skip).
//! - [`Lan`]: a bridge in a namespace joining the site's client interface and a tap device for
//!   QEMU; removed on drop. [`RouterAdvertiser`]: an IPv6 router on that LAN, so iPXE does not
//!   wait for one.
//! - [`Qemu`]: one QEMU run (SeaBIOS + the NIC's iPXE ROM, or OVMF's own PXE) on that tap, in the
//!   namespace, serial console to a file, `-no-reboot`; every wait is bounded and the process is
//!   killed by its PID on drop. [`RemoveOnDrop`] removes the run's directory even on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{run, tool, wait_child};

/// The QEMU binary (Debian `qemu-system-x86`).
pub(crate) const QEMU: &str = "qemu-system-x86_64";
/// Where Debian's `ipxe-qemu` puts the NICs' option ROMs (QEMU looks there by itself).
pub(crate) const IPXE_QEMU_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
/// iPXE for UEFI firmware that chains from the NIC's own driver (Debian `ipxe`).
pub(crate) const SNPONLY_EFI: &str = "/usr/lib/ipxe/snponly.efi";
/// iPXE for legacy PXE ROMs (Debian `ipxe`).
pub(crate) const UNDIONLY_KPXE: &str = "/usr/lib/ipxe/undionly.kpxe";
/// OVMF code and variable store templates (Debian `ovmf`).
pub(crate) const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The variable store template; each run works on a copy.
pub(crate) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The tools and firmware files the QEMU tests need, each with its Debian package.
#[derive(Debug)]
pub(crate) struct Prerequisites;

impl Prerequisites {
    /// Panic with the Debian packages to install unless everything is there.
    pub(crate) fn check() -> Self {
        let mut missing = Vec::new();
        let tool_found = |name: &str| Path::new(&tool(name)).is_absolute();
        for (name, package) in [
            (QEMU, "qemu-system-x86"),
            ("apt-get", "apt"),
            ("apt-cache", "apt"),
            ("dpkg-deb", "dpkg"),
        ] {
            if !tool_found(name) {
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
        assert!(
            missing.is_empty(),
            "the QEMU end-to-end test needs real firmware and tools that are not installed:\n  {}\n\
             Install them with `apt-get install --no-install-recommends qemu-system-x86 ipxe-qemu \
             ipxe ovmf` (.ci/run does it).",
            missing.join("\n  ")
        );
        Self
    }
}

/// Which accelerator QEMU uses: `IMS_QEMU_ACCEL=kvm|tcg`, default TCG.
///
/// TCG is the default even where `/dev/kvm` exists: on nested-virtualisation hosts (such as this
/// project's CI VMs) KVM is present but a Linux guest hangs right after "Probing EDD" (seen
/// again while writing this test), while TCG is fast enough for the whole test.
pub(crate) fn accel() -> &'static str {
    match std::env::var("IMS_QEMU_ACCEL").as_deref() {
        Ok("kvm") => {
            assert!(
                Path::new("/dev/kvm").exists(),
                "IMS_QEMU_ACCEL=kvm but /dev/kvm does not exist: unset it to use TCG"
            );
            "kvm"
        }
        Ok("tcg") | Err(_) => "tcg",
        Ok(other) => panic!("IMS_QEMU_ACCEL={other:?}: use kvm or tcg"),
    }
}

/// A bridge in namespace `ns` joining `uplink` (the site's client-side veth) and a tap device
/// for QEMU. Both are deleted on drop (the namespace's removal would also take them).
#[derive(Debug)]
pub(crate) struct Lan {
    ns: String,
    /// The bridge's name.
    pub(crate) bridge: String,
    /// The tap's name (QEMU's `-netdev tap,ifname=`).
    pub(crate) tap: String,
}

impl Lan {
    /// Create `br0` with `uplink` and `tap0` as ports, all up, STP off.
    pub(crate) fn new(ns: &str, uplink: &str) -> Self {
        let lan = Self {
            ns: ns.to_owned(),
            bridge: "br0".to_owned(),
            tap: "tap0".to_owned(),
        };
        let (br, tap) = (lan.bridge.as_str(), lan.tap.as_str());
        let ip = |args: &[&str]| {
            run(
                Command::new(tool("ip")).args(["-n", ns]).args(args),
                CMD_TIMEOUT,
            )
            .check();
        };
        ip(&[
            "link",
            "add",
            br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        ip(&["link", "set", uplink, "master", br]);
        ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        ip(&["link", "set", tap, "master", br]);
        ip(&["link", "set", tap, "up"]);
        ip(&["link", "set", br, "up"]);
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for dev in [&self.tap, &self.bridge] {
            let _ = run(
                Command::new(tool("ip")).args(["-n", &self.ns, "link", "del", dev]),
                CMD_TIMEOUT,
            );
        }
    }
}

/// The firmware a [`Qemu`] run boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Firmware {
    /// SeaBIOS, and the virtio NIC's iPXE option ROM from `ipxe-qemu` (PXE arch 0).
    BiosIpxeRom,
    /// OVMF with its own PXE stack (arch 7) on a virtio NIC without option ROM.
    UefiPxe,
}

/// One QEMU machine; killed (by PID) on drop if still running.
#[derive(Debug)]
pub(crate) struct Qemu {
    child: Child,
    /// The serial console log.
    pub(crate) serial: PathBuf,
    /// QEMU's own stdout and stderr.
    pub(crate) log: PathBuf,
    started: Instant,
}

impl Qemu {
    /// Start a machine with `mac` on `lan`'s tap in its namespace; files go to `dir` with the
    /// prefix `label`.
    pub(crate) fn start(lan: &Lan, firmware: Firmware, mac: &str, dir: &Path, label: &str) -> Self {
        let serial = dir.join(format!("{label}.serial.log"));
        let log = dir.join(format!("{label}.qemu.log"));
        let _ = std::fs::remove_file(&serial);
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create log: {e}"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("clone log: {e}"));
        let mut cmd = Command::new(tool("ip"));
        // `ip netns exec` execs QEMU: the child's PID is QEMU's own.
        cmd.args(["netns", "exec", &lan.ns, QEMU])
            .args(["-accel", accel(), "-m", "384", "-smp", "1"])
            .args(["-nographic", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                lan.tap
            ));
        match firmware {
            Firmware::BiosIpxeRom => {
                cmd.args(["-boot", "n", "-device"])
                    .arg(format!("virtio-net-pci,netdev=n0,mac={mac},bootindex=1"));
            }
            Firmware::UefiPxe => {
                let vars = dir.join(format!("{label}.ovmf-vars.fd"));
                std::fs::copy(OVMF_VARS, &vars).unwrap_or_else(|e| panic!("copy {OVMF_VARS}: {e}"));
                cmd.arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ))
                    .arg("-device")
                    .arg(format!(
                        "virtio-net-pci,netdev=n0,mac={mac},bootindex=1,romfile="
                    ));
            }
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let line = super::command_line(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        eprintln!("[qemu {label}] pid {}: {line}", child.id());
        Self {
            child,
            serial,
            log,
            started: Instant::now(),
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial console so far, without NULs and ANSI escape sequences, `\r` as line breaks.
    pub(crate) fn console(&self) -> String {
        let raw = std::fs::read(&self.serial).unwrap_or_default();
        clean_console(&String::from_utf8_lossy(&raw))
    }

    /// Wait (bounded) until the console shows one of `needles`; returns the one seen and when.
    /// Fails with the console's tail if QEMU exits first or the time runs out.
    pub(crate) fn wait_console(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(String, Duration), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(n) = needles.iter().find(|n| text.contains(**n)) {
                return Ok(((*n).to_owned(), self.elapsed()));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "QEMU exited ({status}) before the console showed {needles:?}\n{}",
                    self.report()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the console did not show {needles:?} within {timeout:?}\n{}",
                    self.report()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait (bounded) for QEMU to exit on its own (the guest powered off).
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// Kill QEMU (by PID) and reap it.
    pub(crate) fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The tails of the console and of QEMU's own output, for failure messages.
    pub(crate) fn report(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "--- serial console ({}) tail\n{tail}\n--- {}\n{}",
            self.serial.display(),
            self.log.display(),
            super::tail(&self.log, 20)
        )
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An IPv6 router on the LAN, as most provisioning networks have one: it sends a Router
/// Advertisement (no prefix, no default route, no DHCPv6) to all nodes on an interface every
/// 500 ms. iPXE's autoconfiguration otherwise waits ≈ 13 s for one on every boot (the BIOS
/// boot took 25 s without it, 6.5 s with it); with it iPXE finishes IPv6 at once and goes on
/// with IPv4. Stops (bounded: at most 10 minutes) when dropped.
#[derive(Debug)]
pub(crate) struct RouterAdvertiser {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RouterAdvertiser {
    /// Start advertising on `ifname` in namespace `ns`.
    pub(crate) fn start(ns: &str, ifname: &str) -> Self {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        use std::net::{Ipv6Addr, SocketAddrV6};
        use std::sync::atomic::{AtomicBool, Ordering};

        let out = run(
            Command::new(tool("ip")).args(["-n", ns, "-o", "link", "show", "dev", ifname]),
            CMD_TIMEOUT,
        )
        .check();
        let ifindex: u32 = out
            .stdout
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {ifname} in {ns}:\n{out}"));
        let socket = super::netns::run_in(ns, move || {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .unwrap_or_else(|e| panic!("raw ICMPv6 socket: {e}"));
            // RFC 4861: hop limit 255, or receivers drop the advertisement.
            s.set_multicast_hops_v6(255)
                .unwrap_or_else(|e| panic!("IPV6_MULTICAST_HOPS: {e}"));
            s.set_multicast_if_v6(ifindex)
                .unwrap_or_else(|e| panic!("IPV6_MULTICAST_IF: {e}"));
            s
        });
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Type 134, code 0, checksum (the kernel fills it in), hop limit 64, no M/O flags,
            // router lifetime 0 (not a default router), reachable time 0, retrans timer 0.
            let ra: [u8; 16] = [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let all_nodes = SockAddr::from(SocketAddrV6::new(
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                0,
                0,
                ifindex,
            ));
            // Bounded: 1200 rounds of 500 ms at most.
            for _ in 0..1200 {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                // Fails until the interface's link-local address is ready: tried again.
                let _ = socket.send_to(&ra, &all_nodes);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RouterAdvertiser {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A directory removed on drop, also when the test fails (declare it before the [`super::site::Site`]
/// whose directory it names: the site prints its logs when it is dropped, then this removes the
/// kernel, initramfs and logs). `IMS_QEMU_E2E_KEEP=1` keeps it for inspection when the test
/// fails (the site removes it itself when the test passes).
#[derive(Debug, Default)]
pub(crate) struct RemoveOnDrop(pub(crate) Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else {
            return;
        };
        if std::env::var_os("IMS_QEMU_E2E_KEEP").is_some_and(|v| v == "1") {
            eprintln!("[qemu] IMS_QEMU_E2E_KEEP=1: keeping {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Remove NULs and ANSI escape sequences; `\r` becomes a line break.
pub(crate) fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\0' => {}
            '\r' => out.push('\n'),
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::clean_console;

    #[test]
    fn console_noise_is_removed() {
        assert_eq!(
            clean_console("a\0b\u{1b}[2J\u{1b}[0;1mc\rd"),
            "abc\nd".to_owned()
        );
    }
}
