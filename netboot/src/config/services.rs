//! Validation of the boot-file services: `[tftp]`, `[http]`, and the boot profile keys that feed
//! the per-machine iPXE script (`kernel`, `initrd`, `cmdline`).
//!
//! Only the text is checked here; whether `root` exists is a property of the machine the daemon
//! runs on, checked by [`super::Config::check_filesystem`] at start and by `check-config`.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawBootProfile, RawHttp, RawTftp, RawTftpDriver};
use super::{
    DEFAULT_HTTP_MAX_DOWNLOADS, DEFAULT_TFTP_LISTEN, DEFAULT_TFTP_MAX_RETRIES,
    DEFAULT_TFTP_MAX_TRANSFERS, DEFAULT_TFTP_MAX_WINDOWSIZE, DEFAULT_TFTP_RATE_LIMIT,
    DEFAULT_TFTP_TIMEOUT, HttpConfig, Interface, Invalid, TftpConfig, TftpDriver,
};

/// Smallest and largest `blksize` (RFC 2348).
pub(crate) const BLKSIZE_RANGE: (u16, u16) = (8, 65464);
/// Most transfers at once: each holds a UDP port of its own.
const MAX_TRANSFERS: usize = ims_proto::MAX_TFTP_TRANSFERS;
/// Shortest and longest retransmission timeout (RFC 2349 allows 1–255 s on the wire; shorter
/// defaults help on fast local networks and in tests).
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(255));
/// Most retransmissions of one window.
const MAX_RETRIES: u32 = 100;
/// Longest `kernel`/`initrd` path or URL (they go into an iPXE script, not into DHCP).
const MAX_SCRIPT_FILE: usize = 1024;
/// Longest `cmdline` as written (x86 Linux accepts 2048 bytes).
const MAX_CMDLINE: usize = ims_proto::MAX_CMDLINE_LEN;
/// Placeholders substituted in `cmdline`.
pub const CMDLINE_PLACEHOLDERS: [&str; 4] = ["hostname", "ip", "mac", "phone_home"];

type Res<T> = Result<T, Invalid>;

fn invalid(key: &str, span: Option<Range<usize>>, problem: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_owned(),
        problem: problem.into(),
        span,
    }
}

/// `[tftp]`.
pub(crate) fn tftp(entry: &Spanned<RawTftp>) -> Res<TftpConfig> {
    let span = Some(entry.span());
    let raw = entry.get_ref();
    let root = match raw.root.as_deref() {
        None => {
            return Err(invalid(
                "tftp.root",
                span,
                "is missing: give the directory holding the boot files, such as \
                 \"/srv/netboot\"",
            ));
        }
        Some(root) => directory("tftp.root", span.clone(), root)?,
    };
    let listen = match raw.listen.as_deref() {
        None => DEFAULT_TFTP_LISTEN
            .parse()
            .map_err(|_| invalid("tftp.listen", None, "default is not an address"))?,
        Some(s) => socket_addr("tftp.listen", span.clone(), s, "0.0.0.0:69")?,
    };
    let (min, max) = BLKSIZE_RANGE;
    let max_blksize = match raw.max_blksize {
        Some(n) if !(min..=max).contains(&n) => {
            return Err(invalid(
                "tftp.max_blksize",
                span,
                format!(
                    "{n} is outside {min}–{max} (RFC 2348); omit it to fit the block size to the \
                     interface MTU"
                ),
            ));
        }
        other => other,
    };
    let max_windowsize = match raw.max_windowsize {
        None => DEFAULT_TFTP_MAX_WINDOWSIZE,
        Some(0) => {
            return Err(invalid(
                "tftp.max_windowsize",
                span,
                "is 0: at least one block must be in flight (1 is plain RFC 1350 lock-step)",
            ));
        }
        Some(n) => n,
    };
    let max_transfers = match raw.max_transfers {
        None => DEFAULT_TFTP_MAX_TRANSFERS,
        Some(n) if n == 0 || n > MAX_TRANSFERS => {
            return Err(invalid(
                "tftp.max_transfers",
                span,
                format!(
                    "{n} is outside 1–{MAX_TRANSFERS}: each running transfer holds a UDP port \
                     and a socket"
                ),
            ));
        }
        Some(n) => n,
    };
    let max_queue = raw
        .max_queue
        .unwrap_or_else(|| max_transfers.saturating_mul(4));
    let timeout = match raw.timeout {
        None => DEFAULT_TFTP_TIMEOUT,
        Some(d) => {
            let (lo, hi) = TIMEOUT_RANGE;
            if d.0 < lo || d.0 > hi {
                return Err(invalid(
                    "tftp.timeout",
                    span,
                    format!(
                        "{} is outside {}–{}: give a retransmission timeout such as \"1s\"",
                        humantime::format_duration(d.0),
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ),
                ));
            }
            d.0
        }
    };
    let max_retries = match raw.max_retries {
        None => DEFAULT_TFTP_MAX_RETRIES,
        Some(n) if n > MAX_RETRIES => {
            return Err(invalid(
                "tftp.max_retries",
                span,
                format!(
                    "{n} is more than {MAX_RETRIES}: a dead client would hold its slot for long"
                ),
            ));
        }
        Some(n) => n,
    };
    let driver = match raw.driver {
        None | Some(RawTftpDriver::Auto) => TftpDriver::Auto,
        Some(RawTftpDriver::Uring) => TftpDriver::Uring,
        Some(RawTftpDriver::Tokio) => TftpDriver::Tokio,
    };
    let rate_limit_per_ip = super::validate::rate_limit(
        "tftp",
        "rate_limit_per_ip",
        raw.rate_limit_per_ip,
        raw.rate_limit_burst,
        DEFAULT_TFTP_RATE_LIMIT,
        span.clone(),
    )?;
    Ok(TftpConfig {
        root,
        listen,
        max_blksize,
        max_windowsize,
        max_transfers,
        max_queue,
        timeout,
        max_retries,
        driver,
        rate_limit_per_ip,
    })
}

/// `[http]`, after `[tftp]` (its root is the default) and the interfaces (the default public
/// URL's host when `listen` is a wildcard).
pub(crate) fn http(
    entry: &Spanned<RawHttp>,
    tftp: Option<&TftpConfig>,
    interfaces: &[Interface],
) -> Res<HttpConfig> {
    let span = Some(entry.span());
    let raw: &RawHttp = entry.get_ref();
    let listen = match raw.listen.as_deref() {
        None => {
            return Err(invalid(
                "http.listen",
                span,
                "is missing: give the address:port to serve HTTP boot on, such as \
                 \"0.0.0.0:8080\"",
            ));
        }
        Some(s) => socket_addr("http.listen", span.clone(), s, "0.0.0.0:8080")?,
    };
    let root = match (raw.root.as_deref(), tftp) {
        (Some(root), _) => directory("http.root", span.clone(), root)?,
        (None, Some(tftp)) => tftp.root.clone(),
        (None, None) => {
            return Err(invalid(
                "http.root",
                span,
                "is missing: without a [tftp] section (whose root HTTP shares), give the \
                 directory to serve, such as \"/srv/netboot\"",
            ));
        }
    };
    let public_url = match raw.public_url.as_deref() {
        Some(url) => public_url(span.clone(), url)?,
        None => default_public_url(span.clone(), listen, interfaces)?,
    };
    let max_downloads = match raw.max_downloads {
        None => DEFAULT_HTTP_MAX_DOWNLOADS,
        Some(0) => {
            return Err(invalid(
                "http.max_downloads",
                span,
                "is 0: at least one download must be allowed (the default is 256)",
            ));
        }
        Some(n) => n,
    };
    Ok(HttpConfig {
        listen,
        root,
        public_url,
        max_downloads,
    })
}

/// The iPXE script keys of a boot profile: `kernel`, `initrd`, `cmdline`.
pub(crate) fn boot_script(at: &str, span: Option<Range<usize>>, p: &RawBootProfile) -> Res<()> {
    for (key, value) in [("kernel", &p.kernel), ("initrd", &p.initrd)] {
        let Some(value) = value else { continue };
        let key = format!("{at}.{key}");
        if value.trim().is_empty() {
            return Err(invalid(
                &key,
                span,
                "is empty: give a path under the root (such as \"linux/vmlinuz\") or a URL, or \
                 remove the key",
            ));
        }
        if value.len() > MAX_SCRIPT_FILE || value.chars().any(char::is_control) {
            return Err(invalid(
                &key,
                span,
                format!(
                    "{value:?} is not usable: at most {MAX_SCRIPT_FILE} bytes without control \
                     characters"
                ),
            ));
        }
    }
    if let Some(cmdline) = &p.cmdline {
        cmdline_placeholders(&format!("{at}.cmdline"), span.clone(), cmdline)?;
    }
    if p.kernel.is_none() {
        for (key, value) in [("initrd", &p.initrd), ("cmdline", &p.cmdline)] {
            if value.is_some() {
                return Err(invalid(
                    &format!("{at}.{key}"),
                    span,
                    "is set without a kernel: add `kernel` to the profile or remove the key",
                ));
            }
        }
    }
    Ok(())
}

/// A kernel command line: non-empty, printable, only known `{placeholders}`, braces balanced.
fn cmdline_placeholders(key: &str, span: Option<Range<usize>>, cmdline: &str) -> Res<()> {
    let known = || {
        CMDLINE_PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if cmdline.trim().is_empty() {
        return Err(invalid(
            key,
            span,
            "is empty: give the kernel arguments or remove the key",
        ));
    }
    if cmdline.len() > MAX_CMDLINE || cmdline.chars().any(char::is_control) {
        return Err(invalid(
            key,
            span,
            format!("is not usable: at most {MAX_CMDLINE} bytes on one line"),
        ));
    }
    let mut rest = cmdline;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(invalid(
                key,
                span,
                format!("has a '}}' without its '{{': placeholders are {}", known()),
            ));
        }
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['{', '}'])
            .filter(|&i| after[i..].starts_with('}'))
        else {
            return Err(invalid(
                key,
                span,
                format!("has an unclosed '{{': placeholders are {}", known()),
            ));
        };
        let name = &after[..close];
        if !CMDLINE_PLACEHOLDERS.contains(&name) {
            return Err(invalid(
                key,
                span,
                format!(
                    "has an unknown placeholder {{{name}}}: known are {}",
                    known()
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// A directory path as written (existence is checked at start).
fn directory(key: &str, span: Option<Range<usize>>, value: &str) -> Res<PathBuf> {
    if value.trim().is_empty() || value.contains('\0') {
        return Err(invalid(
            key,
            span,
            format!("{value:?} is not a directory path: give one such as \"/srv/netboot\""),
        ));
    }
    Ok(PathBuf::from(value))
}

fn socket_addr(
    key: &str,
    span: Option<Range<usize>>,
    value: &str,
    example: &str,
) -> Res<SocketAddr> {
    value.trim().parse().map_err(|_| {
        invalid(
            key,
            span,
            format!("{value:?} is not an address:port such as \"{example}\""),
        )
    })
}

/// An `http://` or `https://` base URL, returned without a trailing slash.
fn public_url(span: Option<Range<usize>>, url: &str) -> Res<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    if host.is_none_or(str::is_empty) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "http.public_url",
            span,
            format!(
                "{url:?} is not a base URL such as \"http://10.77.0.1:8080\" (the address \
                 machines use to reach this server)"
            ),
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `http://<listen>`; a wildcard listen address is replaced by the first `[[interface]]`
/// address, since machines cannot connect to `0.0.0.0`.
fn default_public_url(
    span: Option<Range<usize>>,
    listen: SocketAddr,
    interfaces: &[Interface],
) -> Res<String> {
    if !listen.ip().is_unspecified() {
        return Ok(format!("http://{listen}"));
    }
    match interfaces.first() {
        Some(interface) => Ok(format!(
            "http://{}",
            SocketAddr::new(IpAddr::V4(interface.address), listen.port())
        )),
        None => Err(invalid(
            "http.public_url",
            span,
            format!(
                "is needed: http.listen {listen} is a wildcard and there is no [[interface]] to \
                 take an address from; give the URL machines use, such as \
                 \"http://10.77.0.1:{}\"",
                listen.port()
            ),
        )),
    }
}
