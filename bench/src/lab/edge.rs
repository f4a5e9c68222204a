//! The edge servers of the lab, each in the edge namespace: `netbootd` (enrolled with the
//! control plane) and, for the comparison, `dnsmasq` with the same DHCP and TFTP service.
//!
//! Also the files they serve: a boot file (`ipxe.efi`, `undionly.kpxe`), `vmlinuz` and
//! `initrd.img` of configurable sizes, filled with a pattern (no sparse holes, so every byte is
//! really read and sent).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ims_proto::MacAddr;

use super::LabError;
use super::control::quic_addr;
use super::netns::{CIDR, EDGE_IF, EDGE_IP, RANGE_END, RANGE_START};
use super::procs::Child;

/// HTTP port of netbootd.
pub const HTTP_PORT: u16 = 8080;

/// Sizes of the served files, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSizes {
    /// The TFTP boot file.
    pub boot_file: u64,
    /// The kernel.
    pub kernel: u64,
    /// The initrd.
    pub initrd: u64,
}

/// Write the boot root under `root`.
///
/// # Errors
/// A file cannot be written.
pub fn write_root(root: &Path, sizes: FileSizes) -> Result<(), LabError> {
    std::fs::create_dir_all(root)
        .map_err(|e| LabError::Setup(format!("create {}: {e}", root.display())))?;
    for (name, size) in [
        ("ipxe.efi", sizes.boot_file),
        ("undionly.kpxe", sizes.boot_file),
        ("vmlinuz", sizes.kernel),
        ("initrd.img", sizes.initrd),
    ] {
        let path = root.join(name);
        let fail = |e: std::io::Error| LabError::Setup(format!("write {}: {e}", path.display()));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(fail)?);
        let chunk: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(31) >> 3) as u8)
            .collect();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).map_err(fail)?;
            left -= n as u64;
        }
        f.flush().map_err(fail)?;
    }
    Ok(())
}

/// The netbootd configuration of the lab.
pub fn netbootd_config(dir: &Path, root: &Path) -> String {
    format!(
        "# written by ims-lab\n\
         data_dir = \"{data}\"\n\
         metrics_listen = \"127.0.0.1:9464\"\n\n\
         [tftp]\nroot = \"{root}\"\nlisten = \"0.0.0.0:69\"\nmax_windowsize = 64\nmax_transfers = 512\n\n\
         [http]\nlisten = \"0.0.0.0:{HTTP_PORT}\"\npublic_url = \"http://{EDGE_IP}:{HTTP_PORT}\"\n\n\
         [[interface]]\nname = \"{EDGE_IF}\"\naddress = \"{EDGE_IP}\"\n\n\
         [[subnet]]\ncidr = \"{CIDR}\"\nrouter = \"{EDGE_IP}\"\nlease_time = \"1h\"\n\
         range = [\"{RANGE_START}\", \"{RANGE_END}\"]\nallow_unknown = false\n\n\
         [control]\nendpoint = \"{quic}\"\n",
        data = dir.join("netbootd-data").display(),
        root = root.display(),
        quic = quic_addr(),
    )
}

/// Write the netbootd config to `<dir>/netbootd.toml`, enrol with `token` (in namespace `ns`)
/// and return the config's path.
///
/// # Errors
/// Writing the file or `netbootd enroll` fails.
pub fn enroll(
    netbootd: &Path,
    ns: &str,
    dir: &Path,
    root: &Path,
    token: &str,
) -> Result<PathBuf, LabError> {
    let config = dir.join("netbootd.toml");
    std::fs::write(&config, netbootd_config(dir, root))
        .map_err(|e| LabError::Setup(format!("write {}: {e}", config.display())))?;
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(netbootd)
        .arg("enroll")
        .arg("--config")
        .arg(&config)
        .args(["--control", &quic_addr().to_string(), "--token", token])
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run netbootd enroll: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "netbootd enroll failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(config)
}

/// Start `netbootd --config CONFIG` in namespace `ns`.
///
/// # Errors
/// The process cannot be started.
pub fn start_netbootd(
    netbootd: &Path,
    ns: &str,
    config: &Path,
    dir: &Path,
) -> Result<Child, LabError> {
    let config = config.display().to_string();
    Child::spawn(
        "netbootd",
        ns,
        netbootd,
        &["--config", &config],
        &[("RUST_LOG", "warn")],
        dir,
    )
}

/// The dnsmasq configuration serving the same machines as netbootd: DHCP for the registered
/// MACs only (as netbootd without `allow_unknown`), the same range and boot files by
/// architecture, TFTP from the same root.
pub fn dnsmasq_config(dir: &Path, root: &Path, macs: &[MacAddr]) -> String {
    let mut c = String::new();
    let _ = write!(
        c,
        "# written by ims-lab\nport=0\nbind-interfaces\ninterface={EDGE_IF}\n\
         dhcp-range={RANGE_START},{RANGE_END},255.255.0.0,1h\ndhcp-option=option:router,{EDGE_IP}\n\
         dhcp-leasefile={leases}\ndhcp-lease-max=100000\ndhcp-authoritative\n\
         no-ping\nquiet-dhcp\nquiet-tftp\n\
         dhcp-ignore=tag:!known\n\
         dhcp-match=set:efi64,option:client-arch,7\ndhcp-boot=tag:efi64,ipxe.efi,,{EDGE_IP}\n\
         dhcp-boot=tag:!efi64,undionly.kpxe,,{EDGE_IP}\n\
         enable-tftp\ntftp-root={root}\ntftp-max=1024\nlog-facility={log}\n",
        leases = dir.join("dnsmasq.leases").display(),
        root = root.display(),
        log = dir.join("dnsmasq-facility.log").display(),
    );
    for m in macs {
        let _ = writeln!(c, "dhcp-host={m}");
    }
    c
}

/// Write the dnsmasq config and start `dnsmasq --keep-in-foreground` in namespace `ns`.
///
/// # Errors
/// The file cannot be written or the process not started.
pub fn start_dnsmasq(
    dnsmasq: &Path,
    ns: &str,
    dir: &Path,
    root: &Path,
    macs: &[MacAddr],
) -> Result<Child, LabError> {
    let conf = dir.join("dnsmasq.conf");
    std::fs::write(&conf, dnsmasq_config(dir, root, macs))
        .map_err(|e| LabError::Setup(format!("write {}: {e}", conf.display())))?;
    let conf_arg = format!("--conf-file={}", conf.display());
    let pid_arg = format!("--pid-file={}", dir.join("dnsmasq.pid").display());
    Child::spawn(
        "dnsmasq",
        ns,
        dnsmasq,
        &[
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            &conf_arg,
            &pid_arg,
            "--user=root",
        ],
        &[],
        dir,
    )
}
