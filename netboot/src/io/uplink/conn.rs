//! One QUIC connection to the control plane: resolve, connect, open the bidirectional stream,
//! and move frames between it and the driver loop (a reader task decoding control messages, a
//! writer task sending encoded frames).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ims_proto::{ControlMessage, FrameDecoder, MAX_FRAME};
use tokio::sync::mpsc;
use tracing::debug;

use crate::config::Endpoint;

/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// An open connection: the QUIC endpoint (its socket), the connection, and the stream halves.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) connection: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
}

/// Resolve `endpoint` and connect to the first address that answers, within `timeout`, then
/// open the session's stream (`open_bi`: the edge speaks first).
///
/// # Errors
/// A message for the log: what failed, on which address.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    server_name: &str,
    config: quinn::ClientConfig,
    timeout: Duration,
) -> Result<Opened, String> {
    let attempt = async {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
                .collect();
        let mut last = format!("{endpoint} resolves to no address");
        for addr in addrs {
            match connect_addr(addr, server_name, config.clone()).await {
                Ok(opened) => return Ok(opened),
                Err(e) => {
                    debug!(%addr, error = %e, "uplink connection attempt failed");
                    last = format!("{addr}: {e}");
                }
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {endpoint} within {} s (is ims-control running with --quic-listen, \
             and is UDP port {} reachable?)",
            timeout.as_secs(),
            endpoint.port
        )),
    }
}

async fn connect_addr(
    addr: SocketAddr,
    server_name: &str,
    config: quinn::ClientConfig,
) -> Result<Opened, String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("UDP socket: {e}"))?;
    let connection = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    Ok(Opened {
        endpoint,
        connection,
        send,
        recv,
    })
}

/// What the reader task reports.
#[derive(Debug)]
pub(crate) enum Received {
    /// A decoded message.
    Message(ControlMessage),
    /// The stream or connection ended; why.
    Closed(String),
}

/// Read frames from `recv` until it ends; hand each message (or the end) to `deliver`, which
/// returns false when nobody listens any more.
pub(crate) async fn read_loop(
    mut recv: quinn::RecvStream,
    mut deliver: impl FnMut(Received) -> bool,
) {
    let mut decoder = FrameDecoder::<ControlMessage>::with_max_frame(MAX_FRAME);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                let why = match decoder.finish() {
                    Ok(()) => "the control plane closed the session".to_owned(),
                    Err(e) => e.to_string(),
                };
                deliver(Received::Closed(why));
                return;
            }
            Err(quinn::ReadError::ConnectionLost(e)) => {
                deliver(Received::Closed(format!("connection lost ({e})")));
                return;
            }
            Err(e) => {
                deliver(Received::Closed(format!(
                    "reading from the control plane: {e}"
                )));
                return;
            }
        };
        decoder.push(buf.get(..n).unwrap_or_default());
        loop {
            match decoder.pop() {
                Ok(Some(message)) => {
                    if !deliver(Received::Message(message)) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    deliver(Received::Closed(format!(
                        "bad data from the control plane: {e}"
                    )));
                    return;
                }
                Err(e) => debug!(error = %e, "skipping a malformed message from the control plane"),
            }
        }
    }
}

/// Write each frame from `frames` to `send` in order; when the channel closes, finish the
/// stream. A write error is reported through `failed`.
pub(crate) async fn write_loop(
    mut send: quinn::SendStream,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    failed: impl FnOnce(String),
) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = send.write_all(&frame).await {
            failed(format!("sending to the control plane failed: {e}"));
            return;
        }
    }
    let _ = send.finish();
}
