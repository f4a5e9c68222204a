//! Static boot files: path checks, confined open, conditional and range requests, and the
//! streaming body with its download accounting. See the parent module docs for the behaviour.

use std::fs::{File, Metadata};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use metrics::{counter, gauge, histogram};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use super::{
    ACTIVE_DOWNLOADS, App, BYTES_SENT, CHUNK, Handled, REQUEST_DURATION, empty, monotonic_now,
    percent_decode, record, text, unavailable,
};
use crate::io::root::open_confined;
use crate::store::events::EventKind;
use crate::tftp::FileError;
use crate::tftp::path::{PathError, normalize};

/// Longest accepted (decoded) file name, in bytes.
const MAX_PATH_LEN: usize = 1024;

/// Longest `Range` header value kept in an [`EventKind::HttpStarted`] event, in bytes.
const MAX_RANGE_IN_EVENT: usize = 128;

/// [`EventKind::HttpFailed`] reasons.
const CLIENT_CLOSED: &str = "client_closed";
const READ_ERROR: &str = "read_error";
const FILE_TRUNCATED: &str = "file_truncated";
const SERVER_SHUTDOWN: &str = "server_shutdown";

pub(super) async fn handle(app: &App, peer: SocketAddr, req: Request) -> Handled {
    let started = monotonic_now();
    let rel = match request_path(req.uri().path()) {
        Ok(rel) => rel,
        Err((status, reason)) => return text(status, reason).into(),
    };
    let head = req.method() == Method::HEAD;
    // A slot is taken before the file is opened, so waiting requests hold no descriptor.
    let permit = if head {
        None
    } else {
        let wait = app.state.downloads.clone().acquire_owned();
        match tokio::time::timeout(app.state.queue_timeout, wait).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => {
                tracing::debug!(%peer, path = rel, "no download slot free: 503");
                return unavailable(
                    "too many downloads in progress: retry in a few seconds (raise [http] \
                     max_downloads to allow more)\n",
                )
                .into();
            }
        }
    };
    let root = app.state.root.clone();
    let opened = {
        let rel = rel.clone();
        tokio::task::spawn_blocking(move || open_confined(&root, &rel)).await
    };
    let (file, meta) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return file_error(e, peer, &rel).into(),
        Err(e) => {
            tracing::error!(path = rel, "opening a boot file: {e}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into();
        }
    };

    let len = meta.len();
    let validators = Validators::of(&meta);
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_TYPE, content_type(&rel));
    validators.insert(&mut headers);
    if validators.not_modified(req.headers()) {
        return with_headers(empty(StatusCode::NOT_MODIFIED), headers).into();
    }
    let range_header = validators
        .if_range_holds(req.headers())
        .then(|| req.headers().get(header::RANGE))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let range = range_header.map_or(ByteRange::Full, |v| parse_range(v, len));
    let (status, start, count) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Partial { start, end } => {
            let content_range = format!("bytes {start}-{end}/{len}");
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            headers.remove(header::CONTENT_TYPE);
            return with_headers(empty(StatusCode::RANGE_NOT_SATISFIABLE), headers).into();
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    let Some(permit) = permit else {
        // HEAD: the headers of the GET, no body.
        return with_headers(empty(status), headers).into();
    };
    let honoured_range = match range {
        ByteRange::Partial { .. } => range_header.map(|v| truncate(v.trim(), MAX_RANGE_IN_EVENT)),
        ByteRange::Full | ByteRange::Unsatisfiable => None,
    };
    tracing::debug!(%peer, path = rel, size = len, range = honoured_range, "boot file download started");
    record(
        app,
        EventKind::HttpStarted {
            peer,
            path: rel.clone(),
            range: honoured_range,
            size: len,
        },
    );
    let download = Download {
        app: app.clone(),
        peer,
        path: rel,
        status: status.as_u16(),
        reaches_eof: start + count == len,
        started,
        sent: 0,
        completed: false,
        error: None,
        _permit: permit,
    };
    gauge!(ACTIVE_DOWNLOADS).increment(1.0);
    let body = FileBody {
        file: Arc::new(file),
        offset: start,
        remaining: count,
        pending: None,
        download,
    };
    let mut response = with_headers(Response::new(Body::new(body)), headers);
    *response.status_mut() = status;
    Handled {
        response,
        timed_by_body: true,
    }
}

/// The normalised relative path of a request, or the error response.
fn request_path(raw: &str) -> Result<String, (StatusCode, String)> {
    let Some(decoded) = percent_decode(raw) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "malformed percent-encoding in the path\n".to_owned(),
        ));
    };
    let start = decoded.iter().take_while(|&&b| b == b'/').count();
    normalize(&decoded[start..], MAX_PATH_LEN).map_err(|e| {
        let status = match e {
            PathError::ParentDir => StatusCode::FORBIDDEN,
            PathError::Empty => StatusCode::NOT_FOUND,
            PathError::TooLong => StatusCode::URI_TOO_LONG,
            PathError::ControlChar | PathError::NotUtf8 => StatusCode::BAD_REQUEST,
        };
        (status, format!("refused: {e}\n"))
    })
}

fn file_error(e: FileError, peer: SocketAddr, rel: &str) -> Response {
    match e {
        FileError::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        FileError::AccessViolation => {
            tracing::info!(%peer, path = rel, "refused: outside the root or not a regular file");
            text(StatusCode::FORBIDDEN, "forbidden\n")
        }
        FileError::Io => {
            tracing::warn!(%peer, path = rel, "I/O error opening a boot file");
            text(StatusCode::INTERNAL_SERVER_ERROR, "I/O error\n")
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn with_headers(mut response: Response, headers: HeaderMap) -> Response {
    response.headers_mut().extend(headers);
    response
}

fn content_type(rel: &str) -> HeaderValue {
    let ext = rel
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "ipxe" | "txt" | "cfg" => HeaderValue::from_static("text/plain; charset=utf-8"),
        _ => HeaderValue::from_static("application/octet-stream"),
    }
}

/// `ETag` and `Last-Modified` of a file.
struct Validators {
    etag: String,
    last_modified: Option<SystemTime>,
}

impl Validators {
    fn of(meta: &Metadata) -> Self {
        let modified = meta.modified().ok();
        let (secs, nanos) = modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
        Self {
            etag: format!("\"{:x}-{secs:x}.{nanos:x}\"", meta.len()),
            // Whole seconds, as HTTP dates carry.
            last_modified: modified.map(|_| UNIX_EPOCH + std::time::Duration::from_secs(secs)),
        }
    }

    fn insert(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, v);
        }
        let date = self.last_modified.map(httpdate::fmt_http_date);
        if let Some(Ok(v)) = date.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }

    /// `If-None-Match` (takes precedence) or `If-Modified-Since` says the client's copy is
    /// current.
    fn not_modified(&self, req: &HeaderMap) -> bool {
        if let Some(inm) = req.get(header::IF_NONE_MATCH) {
            let Ok(inm) = inm.to_str() else { return false };
            return inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag);
        }
        match (self.last_modified, req.get(header::IF_MODIFIED_SINCE)) {
            (Some(modified), Some(since)) => since
                .to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .is_some_and(|since| modified <= since),
            _ => false,
        }
    }

    /// No `If-Range`, or it names the current representation (strong ETag or exact date).
    fn if_range_holds(&self, req: &HeaderMap) -> bool {
        let Some(v) = req.get(header::IF_RANGE) else {
            return true;
        };
        let Ok(v) = v.to_str() else { return false };
        if v.starts_with('"') {
            return v == self.etag;
        }
        match (self.last_modified, httpdate::parse_http_date(v)) {
            (Some(modified), Ok(date)) => modified == date,
            _ => false,
        }
    }
}

/// What part of a file a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ByteRange {
    /// The whole file (no header, an invalid one, or several ranges).
    Full,
    /// Bytes `start..=end`, within the file.
    Partial { start: u64, end: u64 },
    /// No byte of the range is in the file: `416`.
    Unsatisfiable,
}

/// Interpret `Range: bytes=…` for a file of `len` bytes. Malformed headers and multi-range
/// requests are ignored (whole file), as RFC 9110 permits.
pub(super) fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Digits only: an overflow is simply "larger than any file".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // bytes=-N: the last N bytes.
        return match number(last) {
            None => ByteRange::Full,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return ByteRange::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return ByteRange::Full,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |end| end.min(len - 1));
    ByteRange::Partial { start, end }
}

/// One download in flight: holds its slot, keeps the gauges, logs and records its completion,
/// or its failure when it is dropped before the end of the body.
struct Download {
    app: App,
    peer: SocketAddr,
    path: String,
    status: u16,
    /// The response ends at the file's last byte (whole file, or a resumed download).
    reaches_eof: bool,
    started: Instant,
    sent: u64,
    completed: bool,
    /// Why the body stopped, when reading the file failed ([`READ_ERROR`], [`FILE_TRUNCATED`]).
    error: Option<&'static str>,
    _permit: OwnedSemaphorePermit,
}

impl Download {
    fn sent(&mut self, n: u64) {
        self.sent += n;
        counter!(BYTES_SENT).increment(n);
    }

    /// The last byte was handed to the connection.
    fn complete(&mut self) {
        if self.completed {
            return;
        }
        self.completed = true;
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.reaches_eof {
            tracing::info!(
                peer = %self.peer,
                path = self.path,
                bytes = self.sent,
                duration_ms,
                status = self.status,
                "boot file sent"
            );
            record(
                &self.app,
                EventKind::HttpCompleted {
                    peer: self.peer,
                    path: self.path.clone(),
                    bytes: self.sent,
                    duration_ms,
                    status: self.status,
                },
            );
        } else {
            tracing::debug!(
                peer = %self.peer,
                path = self.path,
                bytes = self.sent,
                duration_ms,
                "byte range sent"
            );
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        gauge!(ACTIVE_DOWNLOADS).decrement(1.0);
        histogram!(REQUEST_DURATION, "route" => "file")
            .record(self.started.elapsed().as_secs_f64());
        if self.completed {
            return;
        }
        // The body ends early: the connection dropped it (client gone, or the server stopping
        // after its grace period), or hyper dropped it after a read error.
        let reason = match self.error {
            Some(reason) => reason,
            None if *self.app.stopping.borrow() => SERVER_SHUTDOWN,
            None => CLIENT_CLOSED,
        };
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            peer = %self.peer,
            path = self.path,
            bytes = self.sent,
            duration_ms,
            status = self.status,
            reason,
            "boot file download failed"
        );
        record(
            &self.app,
            EventKind::HttpFailed {
                peer: self.peer,
                path: std::mem::take(&mut self.path),
                reason: reason.to_owned(),
                bytes: self.sent,
                duration_ms,
                status: self.status,
            },
        );
    }
}

/// The streaming body: `pread`s of at most [`CHUNK`] bytes on the blocking pool, one at a time.
struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    download: Download,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            this.download.complete();
            return Poll::Ready(None);
        }
        let pending = this.pending.get_or_insert_with(|| {
            let file = this.file.clone();
            let offset = this.offset;
            let len = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, len))
        });
        let result = ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        let chunk = match result {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => {
                this.download.error = Some(FILE_TRUNCATED);
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while being sent",
                ))));
            }
            Ok(Err(e)) => {
                this.download.error = Some(READ_ERROR);
                tracing::warn!(path = this.download.path, "reading a boot file: {e}");
                return Poll::Ready(Some(Err(e)));
            }
            Err(e) => {
                this.download.error = Some(READ_ERROR);
                return Poll::Ready(Some(Err(io::Error::other(e))));
            }
        };
        let n = chunk.len() as u64;
        this.offset += n;
        this.remaining = this.remaining.saturating_sub(n);
        this.download.sent(n);
        if this.remaining == 0 {
            this.download.complete();
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Read up to `len` bytes at `offset` (fewer only at end of file).
fn read_chunk(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        let cases: &[(&str, u64, ByteRange)] = &[
            ("bytes=0-99", 1000, Partial { start: 0, end: 99 }),
            (
                "bytes=100-",
                1000,
                Partial {
                    start: 100,
                    end: 999,
                },
            ),
            (
                "bytes=-100",
                1000,
                Partial {
                    start: 900,
                    end: 999,
                },
            ),
            ("bytes=-5000", 1000, Partial { start: 0, end: 999 }),
            (
                "bytes=990-5000",
                1000,
                Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (
                "bytes=999-999",
                1000,
                Partial {
                    start: 999,
                    end: 999,
                },
            ),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-1001", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=5-1", 1000, Full),
            ("bytes=0-1,5-6", 1000, Full),
            ("bytes=a-b", 1000, Full),
            ("bytes=-", 1000, Full),
            ("bytes=+1-2", 1000, Full),
            ("items=0-1", 1000, Full),
            ("bytes=1", 1000, Full),
        ];
        for (value, len, want) in cases {
            assert_eq!(parse_range(value, *len), *want, "{value} of {len}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(request_path("/a/b.efi").ok().as_deref(), Some("a/b.efi"));
        assert_eq!(request_path("//a%2Fb.efi").ok().as_deref(), Some("a/b.efi"));
        let status = |p: &str| request_path(p).err().map(|(s, _)| s);
        assert_eq!(status("/../etc/passwd"), Some(StatusCode::FORBIDDEN));
        assert_eq!(status("/%2e%2e/etc/passwd"), Some(StatusCode::FORBIDDEN));
        assert_eq!(status("/a/%2E%2E/%2e%2e/x"), Some(StatusCode::FORBIDDEN));
        assert_eq!(status("/a%00b"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/a%zz"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/a%2"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/%ff"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("/"), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            status(&format!("/{}", "a".repeat(MAX_PATH_LEN + 1))),
            Some(StatusCode::URI_TOO_LONG)
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("boot/menu.IPXE"), "text/plain; charset=utf-8");
        assert_eq!(content_type("pxelinux.cfg"), "text/plain; charset=utf-8");
        assert_eq!(content_type("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("vmlinuz"), "application/octet-stream");
        assert_eq!(content_type("ipxe.efi"), "application/octet-stream");
    }
}
