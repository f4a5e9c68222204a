//! The lab's child processes (`ims-control`, `netbootd`, `dnsmasq`) and their resource use.
//!
//! Every child runs through `ip netns exec NS PROGRAM …` (which execs the program, so the PID is
//! the program's own), in its own process group so that a Ctrl-C in the terminal reaches only
//! `ims-lab`, which then stops the children in order. Output goes to a log file in the lab's
//! temporary directory. A [`Child`] is stopped (SIGTERM, then SIGKILL after a bound) by PID when
//! dropped.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LabError;

/// A running child process.
#[derive(Debug)]
pub struct Child {
    /// Short name for messages.
    pub name: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    child: Option<std::process::Child>,
}

impl Child {
    /// Start `program args…` in namespace `ns` with `env`, output to `<dir>/<name>.log`.
    ///
    /// # Errors
    /// The log cannot be created or the process not started.
    pub fn spawn(
        name: &str,
        ns: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Result<Self, LabError> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log)
            .map_err(|e| LabError::Setup(format!("create {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::Setup(format!("log handle: {e}")))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::Setup(format!("cannot start {}: {e}", program.display())))?;
        Ok(Self {
            name: name.to_owned(),
            log,
            child: Some(child),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `Some(status text)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, wait at most `grace`, then SIGKILL; reaps the process. Idempotent.
    #[allow(clippy::disallowed_methods)] // bounded wait on a real process
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
        }
        let _ = c.wait();
    }

    /// CPU time (user + system) and peak RSS so far.
    pub fn usage(&self) -> Option<Usage> {
        Usage::of(self.pid()?)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A process's resource use from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmHWM (peak resident set), KiB.
    pub peak_rss_kib: u64,
}

impl Usage {
    /// Read the use of process `pid`; `None` when it is gone or the files are unreadable.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Self {
            cpu_s: cpu_seconds(&stat)?,
            peak_rss_kib: vm_hwm_kib(&status)?,
        })
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&v| v > 0)
        .unwrap_or(100);
    Some((utime + stime) as f64 / hz as f64)
}

/// The `VmHWM:` value of a `/proc/PID/status` text, in KiB.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "123 (net boot) S 1 123 123 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as f64;
        assert_eq!(cpu_seconds(stat), Some(300.0 / hz));
        assert_eq!(cpu_seconds("garbage"), None);
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmHWM:\t   4242 kB\nVmRSS:\t 10 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(4242));
        assert_eq!(vm_hwm_kib("Name: x\n"), None);
    }
}
