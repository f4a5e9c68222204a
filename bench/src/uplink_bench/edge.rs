//! One simulated edge, as a task: make a key and CSR, enrol with its join token, connect the
//! uplink with the new certificate, Hello → Welcome + Snapshot → SnapshotAck, then a Heartbeat
//! every interval (the first one at a random point of the first interval) until told to stop,
//! timing each HeartbeatAck. Every step is bounded by the step timeout; whatever goes wrong
//! ends the edge with one [`Failure`] (no reconnection: a benchmark counts, it does not heal).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ims_proto::{
    CAP_DELTA, ControlMessage, EdgeMessage, EnrollRequest, EnrollResponse, FrameDecoder, Heartbeat,
    Hello, MAX_ENROLL_FRAME, Metrics, ProtocolVersion, SERVICE_DHCP, SERVICE_HTTP, SERVICE_TFTP,
    ServiceState, ServiceStatus, SnapshotAck, encode_frame,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rcgen::KeyPair;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::tls::{self, SERVER_NAME};

/// What every edge task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The control plane's QUIC address.
    pub(crate) control: SocketAddr,
    /// Permits for enrolment and session set-up (bounded concurrency).
    pub(crate) setup_slots: Semaphore,
    /// Bound of each step (handshake, each awaited message).
    pub(crate) step_timeout: Duration,
    /// How long an edge waits for outstanding acks after the stop.
    pub(crate) drain: Duration,
    /// Host names are this prefix and the edge's index.
    pub(crate) hostname_prefix: String,
    /// Seed of the first-heartbeat jitter.
    pub(crate) seed: u64,
}

/// Why an edge stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Kind, for counting (`enrol_handshake`, `enrol_refused:InvalidToken`, …).
    pub kind: String,
    /// What happened.
    pub message: String,
}

impl Failure {
    fn new(kind: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            kind: kind.into(),
            message: message.to_string(),
        }
    }
}

/// What one edge did, for the report.
#[derive(Debug, Clone, Default)]
pub struct EdgeOutcome {
    /// When enrolment finished, and how long it took (key, CSR, handshake, answer).
    pub enrolled: Option<(Instant, Duration)>,
    /// How long the uplink set-up took: handshake to Snapshot received.
    pub connected: Option<Duration>,
    /// The heartbeat interval the control plane announced.
    pub interval_ms: Option<u64>,
    /// Each heartbeat: when it was sent and, if acknowledged, its round trip.
    pub heartbeats: Vec<(Instant, Option<Duration>)>,
    /// The session was still up when the run stopped.
    pub alive_at_stop: bool,
    /// Set-up had not finished when the run stopped.
    pub unfinished: bool,
    /// What ended the edge early, if anything.
    pub failure: Option<Failure>,
}

/// SplitMix64: the first heartbeat's offset in the interval, from the seed and the index.
pub(crate) fn jitter_fraction(seed: u64, index: usize) -> f64 {
    let mut z = seed
        .wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 exactly
    let f = (z >> 11) as f64 / (1u64 << 53) as f64;
    f
}

/// A framed bidirectional stream.
struct Stream {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    decoder: FrameDecoder<ControlMessage>,
    buf: Vec<u8>,
}

impl Stream {
    async fn open(conn: Connection, max_frame: usize) -> Result<Self, String> {
        let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        Ok(Self {
            conn,
            send,
            recv,
            decoder: FrameDecoder::with_max_frame(max_frame),
            buf: vec![0; 16 * 1024],
        })
    }

    async fn send(&mut self, msg: &EdgeMessage) -> Result<(), String> {
        let frame = encode_frame(msg).map_err(|e| e.to_string())?;
        self.send.write_all(&frame).await.map_err(|e| e.to_string())
    }

    /// Reads once (cancel-safe) and queues what arrived; `Ok(false)` when the stream ended.
    async fn fill(&mut self) -> Result<bool, String> {
        match self.recv.read(&mut self.buf).await {
            Ok(Some(n)) => {
                self.decoder.push(self.buf.get(..n).unwrap_or_default());
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next message, waiting at most `limit`.
    async fn next(&mut self, limit: Duration) -> Result<ControlMessage, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(msg) = self.decoder.pop().map_err(|e| e.to_string())? {
                return Ok(msg);
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return Err(format!("no message within {limit:?}")),
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return Err("the control plane finished the stream".into()),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    fn close(&self, why: &'static [u8]) {
        self.conn.close(VarInt::from_u32(0), why);
    }
}

async fn handshake(
    ctx: &Ctx,
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
) -> Result<Connection, String> {
    let connecting = endpoint
        .connect_with(config, ctx.control, SERVER_NAME)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(ctx.step_timeout, connecting).await {
        Err(_) => Err(format!("no handshake within {:?}", ctx.step_timeout)),
        Ok(r) => r.map_err(|e| e.to_string()),
    }
}

/// Enrols: key and CSR, enrolment connection verified by the token's fingerprint, one
/// request, one answer.
async fn enrol(
    ctx: &Ctx,
    endpoint: &Endpoint,
    token: &str,
    hostname: &str,
) -> Result<(KeyPair, EnrollResponse), Failure> {
    let fp = tls::token_fingerprint(token)
        .ok_or_else(|| Failure::new("bad_token", "the token has no CA fingerprint"))?;
    let (key, csr_der) = tls::edge_key(hostname).map_err(|e| Failure::new("key", e))?;
    let config = tls::enroll_config(&fp).map_err(|e| Failure::new("tls_config", e))?;
    let conn = handshake(ctx, endpoint, config)
        .await
        .map_err(|e| Failure::new("enrol_handshake", e))?;
    let mut stream = Stream::open(conn, MAX_ENROLL_FRAME)
        .await
        .map_err(|e| Failure::new("enrol_protocol", e))?;
    let request = EdgeMessage::EnrollRequest(EnrollRequest {
        token: token.trim().to_owned(),
        csr_der,
        hostname: hostname.to_owned(),
        software_version: concat!("uplink-bench/", env!("CARGO_PKG_VERSION")).to_owned(),
    });
    let answer = match stream.send(&request).await {
        Ok(()) => stream.next(ctx.step_timeout).await,
        Err(e) => Err(e),
    };
    stream.close(b"enrolled");
    match answer.map_err(|e| Failure::new("enrol_protocol", e))? {
        ControlMessage::EnrollResponse(r) => Ok((key, r)),
        ControlMessage::Error(e) => {
            Err(Failure::new(format!("enrol_refused:{}", e.code), e.message))
        }
        other => Err(Failure::new(
            "enrol_protocol",
            format!("unexpected {} instead of EnrollResponse", other.kind()),
        )),
    }
}

/// Connects the uplink and brings the session up to the SnapshotAck; returns the stream and
/// the heartbeat interval.
async fn open_session(
    ctx: &Ctx,
    endpoint: &Endpoint,
    key: &KeyPair,
    enrolled: &EnrollResponse,
    hostname: &str,
) -> Result<(Stream, u64), Failure> {
    let config = tls::uplink_config(&enrolled.ca_der, &enrolled.certificate_der, key)
        .map_err(|e| Failure::new("tls_config", e))?;
    let conn = handshake(ctx, endpoint, config)
        .await
        .map_err(|e| Failure::new("uplink_handshake", e))?;
    let protocol = |e: String| Failure::new("session_protocol", e);
    let mut stream = Stream::open(conn, ims_proto::MAX_FRAME)
        .await
        .map_err(protocol)?;
    let hello = EdgeMessage::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        worker_id: Some(enrolled.worker_id.clone()),
        site: Some(enrolled.site.clone()),
        software_version: concat!("uplink-bench/", env!("CARGO_PKG_VERSION")).to_owned(),
        hostname: hostname.to_owned(),
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        interfaces: Vec::new(),
        capabilities: vec![CAP_DELTA.to_owned()],
        snapshot_generation: None,
    });
    stream.send(&hello).await.map_err(protocol)?;
    let interval_ms = match stream.next(ctx.step_timeout).await.map_err(protocol)? {
        ControlMessage::Welcome(w) => w.heartbeat_interval_ms,
        other => return Err(refused_or_unexpected(&other, "Welcome")),
    };
    let generation = match stream.next(ctx.step_timeout).await.map_err(protocol)? {
        ControlMessage::Snapshot(s) => s.generation,
        ControlMessage::Delta(d) => d.generation,
        other => return Err(refused_or_unexpected(&other, "Snapshot")),
    };
    stream
        .send(&EdgeMessage::SnapshotAck(SnapshotAck { generation }))
        .await
        .map_err(protocol)?;
    Ok((stream, interval_ms))
}

fn refused_or_unexpected(msg: &ControlMessage, expected: &str) -> Failure {
    match msg {
        ControlMessage::Error(e) => Failure::new(format!("session_refused:{}", e.code), &e.message),
        other => Failure::new(
            "session_protocol",
            format!("unexpected {} instead of {expected}", other.kind()),
        ),
    }
}

fn heartbeat(seq: u64, index: usize, uptime_s: u64) -> EdgeMessage {
    let running = || ServiceStatus {
        state: ServiceState::Running,
        last_error: None,
        last_error_at_ms: None,
    };
    let services = [SERVICE_DHCP, SERVICE_TFTP, SERVICE_HTTP]
        .into_iter()
        .map(|s| (s.to_owned(), running()))
        .collect();
    EdgeMessage::Heartbeat(Heartbeat {
        seq,
        services,
        metrics: Metrics {
            active_leases: (index % 97) as u64,
            cpu_percent: 1.5,
            memory_bytes: 48 << 20,
            uptime_s,
            ..Metrics::default()
        },
    })
}

/// Resolves when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Runs edge `index` with `token` on `endpoint`: set-up (holding a set-up slot), one `ready`
/// message when set-up ended either way, heartbeats until `stop` turns true.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    index: usize,
    token: String,
    endpoint: Endpoint,
    ready: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
) -> EdgeOutcome {
    let mut out = EdgeOutcome::default();
    let hostname = format!("{}{index:05}", ctx.hostname_prefix);
    let setup = async {
        let _slot = ctx
            .setup_slots
            .acquire()
            .await
            .map_err(|e| Failure::new("internal", e))?;
        let t0 = Instant::now();
        let (key, enrolled) = enrol(&ctx, &endpoint, &token, &hostname).await?;
        let enrolled_at = Instant::now();
        let enrol_time = enrolled_at - t0;
        let connecting = async {
            let t1 = Instant::now();
            open_session(&ctx, &endpoint, &key, &enrolled, &hostname)
                .await
                .map(|(s, ms)| (s, ms, t1.elapsed()))
        };
        Ok::<_, Failure>(((enrolled_at, enrol_time), connecting.await))
    };
    let setup = tokio::select! {
        r = setup => Some(r),
        () = stopped(&mut stop) => None,
    };
    let _ = ready.send(());
    let (mut stream, interval_ms) = match setup {
        None => {
            out.unfinished = true;
            return out;
        }
        Some(Err(f)) => {
            out.failure = Some(f);
            return out;
        }
        Some(Ok((enrolled, session))) => {
            out.enrolled = Some(enrolled);
            match session {
                Ok((stream, ms, took)) => {
                    out.connected = Some(took);
                    out.interval_ms = Some(ms);
                    (stream, ms)
                }
                Err(f) => {
                    out.failure = Some(f);
                    return out;
                }
            }
        }
    };
    let interval = Duration::from_millis(interval_ms.clamp(100, 3_600_000));
    let session_start = Instant::now();
    let mut next = session_start + interval.mul_f64(jitter_fraction(ctx.seed, index));
    let mut seq = 0u64;
    // seq -> index in out.heartbeats
    let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
    let failure = loop {
        tokio::select! {
            () = stopped(&mut stop) => break None,
            () = tokio::time::sleep_until(next) => {
                seq += 1;
                let msg = heartbeat(seq, index, session_start.elapsed().as_secs());
                let sent = Instant::now();
                pending.insert(seq, out.heartbeats.len());
                out.heartbeats.push((sent, None));
                if let Err(e) = stream.send(&msg).await {
                    break Some(Failure::new("connection_lost", e));
                }
                next += interval;
            }
            filled = stream.fill() => {
                if let Some(f) = on_input(filled, &mut stream, &mut pending, &mut out).await {
                    break Some(f);
                }
            }
        }
    };
    if failure.is_none() {
        out.alive_at_stop = true;
        let drain_until = Instant::now() + ctx.drain;
        while !pending.is_empty() {
            let Ok(filled) = tokio::time::timeout_at(drain_until, stream.fill()).await else {
                break;
            };
            if let Some(f) = on_input(filled, &mut stream, &mut pending, &mut out).await {
                out.failure = Some(f);
                break;
            }
        }
        // A clean end: finish the stream and let the control plane close the connection
        // (it does once it reads the end), as an edge going away does.
        if stream.send.finish().is_ok() {
            let _ = tokio::time::timeout(ctx.drain, stream.conn.closed()).await;
        }
    }
    out.failure = out.failure.take().or(failure);
    stream.close(b"bench done");
    out
}

/// Handles what one read brought: acks complete heartbeats, snapshots and deltas are
/// acknowledged, an error or the end of the stream ends the edge.
async fn on_input(
    filled: Result<bool, String>,
    stream: &mut Stream,
    pending: &mut BTreeMap<u64, usize>,
    out: &mut EdgeOutcome,
) -> Option<Failure> {
    let received = Instant::now();
    match filled {
        Ok(true) => {}
        Ok(false) => {
            return Some(Failure::new(
                "connection_lost",
                "the control plane finished the stream",
            ));
        }
        Err(e) => return Some(Failure::new("connection_lost", e)),
    }
    loop {
        let msg = match stream.decoder.pop() {
            Ok(Some(msg)) => msg,
            Ok(None) => return None,
            Err(e) => return Some(Failure::new("session_protocol", e)),
        };
        match msg {
            ControlMessage::HeartbeatAck(ack) => {
                if let Some(i) = pending.remove(&ack.seq) {
                    if let Some(h) = out.heartbeats.get_mut(i) {
                        h.1 = Some(received - h.0);
                    }
                }
            }
            ControlMessage::Snapshot(s) => {
                let ack = EdgeMessage::SnapshotAck(SnapshotAck {
                    generation: s.generation,
                });
                if let Err(e) = stream.send(&ack).await {
                    return Some(Failure::new("connection_lost", e));
                }
            }
            ControlMessage::Delta(d) => {
                let ack = EdgeMessage::SnapshotAck(SnapshotAck {
                    generation: d.generation,
                });
                if let Err(e) = stream.send(&ack).await {
                    return Some(Failure::new("connection_lost", e));
                }
            }
            ControlMessage::Error(e) => {
                return Some(Failure::new(
                    format!("session_refused:{}", e.code),
                    e.message,
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_spread_over_the_interval() {
        let mut buckets = [0usize; 10];
        for i in 0..10_000 {
            let f = jitter_fraction(7, i);
            assert!((0.0..1.0).contains(&f), "{f}");
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let b = (f * 10.0) as usize;
            buckets[b] += 1;
        }
        for (b, n) in buckets.iter().enumerate() {
            assert!((800..1200).contains(n), "bucket {b}: {n} of 10000");
        }
        assert_ne!(jitter_fraction(7, 1), jitter_fraction(8, 1));
    }

    #[test]
    fn heartbeats_carry_the_sequence_and_three_services() {
        let EdgeMessage::Heartbeat(h) = heartbeat(4, 3, 20) else {
            panic!("a heartbeat")
        };
        assert_eq!(h.seq, 4);
        assert_eq!(h.services.len(), 3);
        assert_eq!(h.metrics.uptime_s, 20);
        assert!(encode_frame(&heartbeat(4, 3, 20)).is_ok());
    }
}
