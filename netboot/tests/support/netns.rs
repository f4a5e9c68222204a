//! Entering a network namespace from the test process: a closure runs on a fresh thread that has
//! joined the namespace (`setns(CLONE_NEWNET)` affects only the calling thread). Sockets created
//! there stay in that namespace and can be used from any thread afterwards.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` keeps its namespace handles.
fn handle(ns: &str) -> PathBuf {
    let run = PathBuf::from("/run/netns").join(ns);
    if run.exists() {
        run
    } else {
        PathBuf::from("/var/run/netns").join(ns)
    }
}

/// Run `f` on a thread inside the network namespace `ns` and return its result.
pub(crate) fn run_in<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = handle(ns);
    let joined = std::thread::spawn(move || {
        let fd = File::open(&path)
            .unwrap_or_else(|e| panic!("cannot open namespace {}: {e}", path.display()));
        setns(&fd, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns({}): {e}", path.display()));
        f()
    })
    .join();
    match joined {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A minimal HTTP/1.0 GET from inside `ns`: `(status, body)`.
///
/// # Errors
/// Connection or read failures (also timeouts), and responses that are not HTTP.
pub(crate) fn http_get(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let path = path.to_owned();
    run_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        parse_response(&raw)
    })
}

/// Split an HTTP/1.x response into status and body (de-chunked if needed).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad HTTP status line: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_owned()));
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("truncated chunked body")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok((status, out));
        }
        let chunk = after.get(..size).ok_or("truncated chunk")?;
        out.push_str(chunk);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}
