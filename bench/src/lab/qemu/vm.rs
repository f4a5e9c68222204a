//! One QEMU machine ([`Qemu`]) on a [`Tap`]: SeaBIOS + the virtio NIC's iPXE ROM, or OVMF's
//! own PXE; serial console to a file, `-no-reboot`, its own process group (a Ctrl-C in the
//! terminal reaches only its owner). Every wait is bounded; the process is killed by its PID on
//! drop.
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Accel, OVMF_CODE, OVMF_VARS, QEMU, QemuError, Tap, find_tool, io_error};

/// The firmware a [`Qemu`] run boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, and the virtio NIC's iPXE option ROM from `ipxe-qemu` (PXE arch 0).
    BiosIpxeRom,
    /// OVMF with its own PXE stack (arch 7) on a virtio NIC without option ROM.
    UefiPxe,
}

/// One QEMU machine; killed (by PID) on drop if still running.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    /// The serial console log.
    pub serial: PathBuf,
    /// QEMU's own stdout and stderr.
    pub log: PathBuf,
    started: Instant,
}

impl Qemu {
    /// Start a machine with `mac` (`52:54:00:…`) on `tap`, in the tap's namespace, 384 MiB,
    /// one CPU; its files go to `dir` with the prefix `label` (`<label>.serial.log`,
    /// `<label>.qemu.log`).
    ///
    /// # Errors
    /// A log file cannot be created, the OVMF variables not copied, or QEMU not started.
    pub fn start(
        tap: &Tap,
        firmware: Firmware,
        accel: Accel,
        mac: &str,
        dir: &Path,
        label: &str,
    ) -> Result<Self, QemuError> {
        let serial = dir.join(format!("{label}.serial.log"));
        let log = dir.join(format!("{label}.qemu.log"));
        let _ = std::fs::remove_file(&serial);
        let out = std::fs::File::create(&log).map_err(io_error("create", &log))?;
        let err = out.try_clone().map_err(io_error("clone handle of", &log))?;
        let mut cmd = Command::new(find_tool("ip")?);
        // `ip netns exec` execs QEMU: the child's PID is QEMU's own.
        cmd.args(["netns", "exec", &tap.ns, QEMU])
            .args(["-accel", accel.name(), "-m", "384", "-smp", "1"])
            .args(["-nographic", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                tap.name
            ));
        match firmware {
            Firmware::BiosIpxeRom => {
                cmd.args(["-boot", "n", "-device"])
                    .arg(format!("virtio-net-pci,netdev=n0,mac={mac},bootindex=1"));
            }
            Firmware::UefiPxe => {
                let vars = dir.join(format!("{label}.ovmf-vars.fd"));
                std::fs::copy(OVMF_VARS, &vars)
                    .map_err(io_error("copy OVMF variables to", &vars))?;
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
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| QemuError::Command(format!("cannot start {QEMU} for {label}: {e}")))?;
        Ok(Self {
            child,
            serial,
            log,
            started: Instant::now(),
        })
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial console so far, without NULs and ANSI escape sequences, `\r` as line breaks.
    pub fn console(&self) -> String {
        let raw = std::fs::read(&self.serial).unwrap_or_default();
        clean_console(&String::from_utf8_lossy(&raw))
    }

    /// Whether QEMU has exited (reaped if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait (bounded) until the console shows one of `needles`; returns the one seen and when
    /// (since the start).
    ///
    /// # Errors
    /// [`QemuError::Boot`] with the console's tail if QEMU exits first or the time runs out.
    pub fn wait_console(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(String, Duration), QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(n) = needles.iter().find(|n| text.contains(**n)) {
                return Ok(((*n).to_owned(), self.elapsed()));
            }
            if let Some(status) = self.exited() {
                return Err(QemuError::Boot(format!(
                    "QEMU exited ({status}) before the console showed {needles:?}\n{}",
                    self.report()
                )));
            }
            if Instant::now() >= deadline {
                return Err(QemuError::Boot(format!(
                    "the console did not show {needles:?} within {timeout:?}\n{}",
                    self.report()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait (bounded) for QEMU to exit on its own (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill QEMU (by PID) and reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The tails of the console and of QEMU's own output, for failure messages.
    pub fn report(&self) -> String {
        fn tail(text: &str, n: usize) -> String {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        let log = std::fs::read(&self.log).unwrap_or_default();
        format!(
            "--- serial console ({}) tail\n{}\n--- {}\n{}",
            self.serial.display(),
            tail(&self.console(), 60),
            self.log.display(),
            tail(&String::from_utf8_lossy(&log), 20)
        )
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Remove NULs and ANSI escape sequences; `\r` becomes a line break.
pub fn clean_console(raw: &str) -> String {
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
