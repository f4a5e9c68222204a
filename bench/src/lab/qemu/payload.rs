//! The boot payload of the QEMU machines ([`super::vm`]): a Debian cloud kernel and
//! `busybox-static`, fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a cache
//! directory (kept between runs), the virtio-net driver modules with their dependencies (read
//! from each module's `.modinfo`, decompressed if the package ships `.ko.xz`/`.ko.zst`/`.ko.gz`),
//! and [`Payload::write_initramfs`]: a `newc` cpio written here (no `cpio` tool needed) whose
//! `/init` loads the modules, gets an address with udhcpc, POSTs to the `phone_home=` URL from
//! the kernel command line, prints a marker with the run's token and powers off.
//!
//! Used by `ims-lab --qemu` and by the real-firmware e2e test (`netboot/tests/qemu_e2e.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{QemuError, find_tool, io_error, run_tool};

/// The kernel flavour's meta package: it names the current versioned image package.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// The kernel modules the virtio NIC needs (their dependencies are added).
pub const NIC_MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];
/// The marker the initramfs prints after a successful phone-home.
pub const PHONE_HOME_OK: &str = "IMS-E2E phone-home ok";
/// The marker the initramfs prints when a step failed.
pub const INIT_FAILED: &str = "IMS-E2E failed:";
/// The kernel command-line key whose value the initramfs sends as `token` in its phone-home.
pub const TOKEN_ARG: &str = "ims_e2e_token";

const CMD_TIMEOUT: Duration = Duration::from_secs(20);
const APT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where downloaded packages are unpacked: `IMS_QEMU_E2E_CACHE` if set, else
/// `<base>/qemu-e2e-cache` (kept between runs).
pub fn cache_dir(base: &Path) -> PathBuf {
    std::env::var_os("IMS_QEMU_E2E_CACHE")
        .map_or_else(|| base.join("qemu-e2e-cache"), PathBuf::from)
}

/// One kernel module for the initramfs: its name and its (decompressed) bytes.
#[derive(Debug)]
pub struct Module {
    /// Module name (`virtio_net`).
    pub name: String,
    /// The `.ko` file.
    pub bytes: Vec<u8>,
}

/// The boot payload: kernel, static busybox and the NIC's modules in load order.
#[derive(Debug)]
pub struct Payload {
    /// The kernel package used (`linux-image-6.1.0-…-cloud-amd64`).
    pub kernel_package: String,
    /// The bzImage.
    pub kernel: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
    /// Modules to `insmod`, dependencies first (built-in ones are left out).
    pub modules: Vec<Module>,
}

impl Payload {
    /// Fetch (once, into `cache`) and unpack the kernel and busybox-static packages, and collect
    /// the NIC's modules. `IMS_QEMU_E2E_KERNEL_PKG` names another kernel package.
    ///
    /// # Errors
    /// No Debian mirror (and no `.deb` in `<cache>/debs`), a failed unpack, a kernel without
    /// the virtio NIC's modules, or a file that cannot be read or written.
    pub fn prepare(cache: &Path) -> Result<Self, QemuError> {
        std::fs::create_dir_all(cache).map_err(io_error("create cache dir", cache))?;
        let kernel_package = match std::env::var("IMS_QEMU_E2E_KERNEL_PKG") {
            Ok(p) => p,
            Err(_) => current_kernel_package()?,
        };
        let kernel_root = unpacked(cache, &kernel_package)?;
        let busybox_root = unpacked(cache, "busybox-static")?;
        let busybox = busybox_root.join("bin/busybox");
        if !busybox.is_file() {
            return Err(QemuError::Payload(format!(
                "busybox-static has no bin/busybox under {} (remove that directory to unpack \
                 it again)",
                busybox_root.display()
            )));
        }
        let kernel = first_entry(&kernel_root.join("boot"), "vmlinuz-").ok_or_else(|| {
            QemuError::Payload(format!(
                "{kernel_package} has no boot/vmlinuz-* under {}",
                kernel_root.display()
            ))
        })?;
        let modules_dir = first_entry(&kernel_root.join("lib/modules"), "").ok_or_else(|| {
            QemuError::Payload(format!(
                "{kernel_package} has no lib/modules/<version> directory"
            ))
        })?;
        let modules = nic_modules(&modules_dir, &NIC_MODULES)?;
        Ok(Self {
            kernel_package,
            kernel,
            busybox,
            modules,
        })
    }

    /// The names of [`Payload::modules`], space-separated (for messages).
    pub fn module_names(&self) -> String {
        self.modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Write the initramfs (an uncompressed `newc` cpio) to `dest`.
    ///
    /// # Errors
    /// busybox cannot be read or `dest` written.
    pub fn write_initramfs(&self, dest: &Path) -> Result<(), QemuError> {
        let busybox = std::fs::read(&self.busybox).map_err(io_error("read", &self.busybox))?;
        let mut cpio = Cpio::default();
        for dir in [
            "bin",
            "dev",
            "proc",
            "sys",
            "etc",
            "lib",
            "lib/modules",
            "tmp",
        ] {
            cpio.dir(dir);
        }
        // The kernel opens /dev/console for /init before devtmpfs is mounted.
        cpio.char_dev("dev/console", 5, 1);
        cpio.file("bin/busybox", 0o755, &busybox);
        cpio.symlink("bin/sh", "busybox");
        let mut insmod = String::new();
        for m in &self.modules {
            cpio.file(&format!("lib/modules/{}.ko", m.name), 0o644, &m.bytes);
            let _ = write!(insmod, " {}", m.name);
        }
        cpio.file("bin/udhcpc-script", 0o755, UDHCPC_SCRIPT.as_bytes());
        cpio.file("init", 0o755, init_script(insmod.trim()).as_bytes());
        std::fs::write(dest, cpio.finish()).map_err(io_error("write", dest))
    }
}

/// udhcpc's hook: configure the address it got.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  bound|renew)\n\
    ip addr flush dev \"$interface\"\n\
    ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
    echo \"IMS-E2E udhcpc: $interface $ip/${mask:-24}\" ;;\n\
esac\n\
exit 0\n";

/// The initramfs's `/init`: NIC modules, DHCP, phone-home with the run token, power off.
fn init_script(modules: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
fail() {{ echo "{INIT_FAILED} $*"; poweroff -f; }}
token=$(sed -n 's/.*{TOKEN_ARG}=\([^ ]*\).*/\1/p' /proc/cmdline)
url=$(sed -n 's/.*phone_home=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "IMS-E2E init: token=$token phone_home=$url"
for m in {modules}; do
  insmod /lib/modules/$m.ko || fail "insmod $m"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up || fail "no eth0"
udhcpc -i eth0 -n -q -t 10 -T 1 -s /bin/udhcpc-script || fail "udhcpc got no lease"
[ -n "$url" ] || fail "no phone_home= on the kernel command line"
# (busybox 1.35's `wget -T` crashes: bound it with `timeout` instead)
if timeout 20 wget -q -O /tmp/reply --header "Content-Type: application/json" \
     --post-data "{{\"token\":\"$token\"}}" "$url"; then
  echo "{PHONE_HOME_OK} token=$token"
else
  fail "POST $url"
fi
poweroff -f
"#
    )
}

/// The versioned package `linux-image-cloud-amd64` depends on.
fn current_kernel_package() -> Result<String, QemuError> {
    let out = run_tool(
        Command::new(find_tool("apt-cache")?).args(["depends", KERNEL_META]),
        CMD_TIMEOUT,
    )?;
    out.lines()
        .find_map(|l| {
            let dep = l.trim().strip_prefix("Depends:")?.trim();
            dep.starts_with("linux-image-").then(|| dep.to_owned())
        })
        .ok_or_else(|| {
            QemuError::Payload(format!(
                "cannot tell which kernel package {KERNEL_META} stands for (run `apt-get update`; \
                 or set IMS_QEMU_E2E_KERNEL_PKG=linux-image-<version>-cloud-amd64):\n{out}"
            ))
        })
}

/// `<cache>/<package>`: the package unpacked with `dpkg-deb -x`, downloaded first if needed.
fn unpacked(cache: &Path, package: &str) -> Result<PathBuf, QemuError> {
    let root = cache.join(package);
    let done = cache.join(format!("{package}.unpacked"));
    if done.is_file() && root.is_dir() {
        return Ok(root);
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(io_error("create", &debs))?;
    let prefix = format!("{package}_");
    let deb = match first_entry(&debs, &prefix) {
        Some(deb) => deb,
        None => {
            let out = run_tool(
                Command::new(find_tool("apt-get")?)
                    .args(["download", package])
                    .current_dir(&debs),
                APT_TIMEOUT,
            )
            .map_err(|e| {
                QemuError::Payload(format!(
                    "`apt-get download {package}` failed (this needs a Debian mirror, or the \
                     .deb placed in {}): {e}",
                    debs.display()
                ))
            })?;
            first_entry(&debs, &prefix).ok_or_else(|| {
                QemuError::Payload(format!("apt-get download {package} left no .deb:\n{out}"))
            })?
        }
    };
    let _ = std::fs::remove_dir_all(&root);
    run_tool(
        Command::new(find_tool("dpkg-deb")?)
            .arg("-x")
            .arg(&deb)
            .arg(&root),
        APT_TIMEOUT,
    )?;
    std::fs::write(&done, deb.display().to_string()).map_err(io_error("write", &done))?;
    Ok(root)
}

/// The first entry (by name) of `dir` whose name starts with `prefix`.
fn first_entry(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A module name as the kernel spells it (`-` and `_` are the same).
fn module_name(file_name: &str) -> Option<String> {
    let stem = file_name.split(".ko").next()?;
    (file_name.len() > stem.len()).then(|| stem.replace('-', "_"))
}

/// The modules `wanted` needs from `modules_dir` (`lib/modules/<version>`), dependencies
/// first; built-in modules are left out.
fn nic_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>, QemuError> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(module_name)
            {
                files.insert(name, path);
            }
        }
    }
    let builtin: Vec<String> = std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next().and_then(module_name))
        .collect();
    let mut out: Vec<Module> = Vec::new();
    let mut visiting = Vec::new();
    for name in wanted {
        add_module(name, &files, &builtin, &mut out, &mut visiting)?;
    }
    Ok(out)
}

fn add_module(
    name: &str,
    files: &std::collections::BTreeMap<String, PathBuf>,
    builtin: &[String],
    out: &mut Vec<Module>,
    visiting: &mut Vec<String>,
) -> Result<(), QemuError> {
    if out.iter().any(|m| m.name == name)
        || builtin.iter().any(|b| b == name)
        || visiting.iter().any(|v| v == name)
    {
        return Ok(());
    }
    let path = files.get(name).ok_or_else(|| {
        QemuError::Payload(format!(
            "kernel module {name} is neither a module nor built in: this kernel cannot drive \
             the virtio NIC (set IMS_QEMU_E2E_KERNEL_PKG to another kernel package)"
        ))
    })?;
    let bytes = decompressed(path)?;
    visiting.push(name.to_owned());
    for dep in depends(&bytes) {
        add_module(&dep, files, builtin, out, visiting)?;
    }
    visiting.pop();
    out.push(Module {
        name: name.to_owned(),
        bytes,
    });
    Ok(())
}

/// A module file's bytes, decompressed with `xz`, `zstd` or `gzip` when it is compressed.
fn decompressed(path: &Path) -> Result<Vec<u8>, QemuError> {
    let name = path.to_string_lossy();
    let (tool_name, package) = if name.ends_with(".ko.xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".ko.zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".ko.gz") {
        ("gzip", "gzip")
    } else {
        return std::fs::read(path).map_err(io_error("read", path));
    };
    let program = find_tool(tool_name).map_err(|_| {
        QemuError::Missing(format!("{tool_name} (Debian package {package}) for {name}"))
    })?;
    let out = Command::new(program)
        .arg("-dc")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io_error("decompress", path))?;
    if !out.status.success() {
        return Err(QemuError::Payload(format!(
            "`{tool_name} -dc {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// The `depends=` list of a module's `.modinfo` section.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// A `newc` (SVR4, no CRC) cpio archive, as the kernel unpacks an initramfs.
#[derive(Debug, Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(namesize).unwrap_or(u32::MAX),
            0,
        ];
        let mut header = String::from("070701");
        for f in fields {
            let _ = write!(header, "{f:08X}");
        }
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, (0, 0), target.as_bytes());
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::{Cpio, depends, module_name};

    #[test]
    fn module_names_and_depends_are_read() {
        assert_eq!(module_name("virtio_net.ko").as_deref(), Some("virtio_net"));
        assert_eq!(
            module_name("virtio-rng.ko.xz").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(module_name("modules.order"), None);
        let ko = b"\x7fELF...\0license=GPL\0depends=net_failover,virtio,virtio-ring\0retpoline=Y\0";
        assert_eq!(depends(ko), ["net_failover", "virtio", "virtio_ring"]);
        assert!(depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!"));
    }
}
