//! Moving framed messages over quinn streams: reading edge messages (a reader task feeding a
//! channel), writing control messages with a time limit, and refusing a connection with an
//! [`ErrorReply`] before closing it.

use std::time::Duration;

use ims_proto::{ControlMessage, EdgeMessage, ErrorCode, ErrorReply, FrameDecoder, encode_frame};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

/// How long the edge has to open its stream and send its first message.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may wait for the edge to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the edge to receive a final message before closing.
pub const LINGER: Duration = Duration::from_secs(2);

/// Connection close code: normal end.
pub const CLOSE_DONE: u32 = 0;
/// Connection close code: refused (identity, token, revocation).
pub const CLOSE_REFUSED: u32 = 1;
/// Connection close code: protocol error.
pub const CLOSE_PROTOCOL: u32 = 2;
/// Connection close code: the control plane failed or is shutting down.
pub const CLOSE_UNAVAILABLE: u32 = 3;

/// What the reader task delivers.
#[derive(Debug)]
pub enum Inbound {
    /// A message.
    Message(EdgeMessage),
    /// A frame that did not hold a valid message (skipped; the stream stays usable).
    Malformed(String),
    /// The edge sent an oversized or truncated frame; nothing more comes.
    Failed(String),
    /// The stream or connection failed; nothing more comes.
    Lost(String),
    /// The edge finished the stream cleanly.
    Ended,
}

/// Starts a task reading frames of at most `max_frame` bytes from `recv`; messages arrive on
/// the returned channel in order. The task ends with the stream or when the receiver is
/// dropped.
pub fn spawn_reader(mut recv: RecvStream, max_frame: usize) -> mpsc::Receiver<Inbound> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut decoder = FrameDecoder::<EdgeMessage>::with_max_frame(max_frame);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let last = match recv.read(&mut buf).await {
                Ok(Some(n)) => {
                    decoder.push(buf.get(..n).unwrap_or_default());
                    None
                }
                Ok(None) => Some(match decoder.finish() {
                    Ok(()) => Inbound::Ended,
                    Err(e) => Inbound::Failed(e.to_string()),
                }),
                Err(e) => Some(Inbound::Lost(format!("reading the stream failed: {e}"))),
            };
            loop {
                let item = match decoder.pop() {
                    Ok(Some(msg)) => Inbound::Message(msg),
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => Inbound::Failed(e.to_string()),
                    Err(e) => Inbound::Malformed(e.to_string()),
                };
                let fatal = matches!(item, Inbound::Failed(_));
                if tx.send(item).await.is_err() || fatal {
                    let _ = recv.stop(VarInt::from_u32(CLOSE_PROTOCOL));
                    return;
                }
            }
            if let Some(last) = last {
                let _ = tx.send(last).await;
                return;
            }
        }
    });
    rx
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The message cannot be encoded (too large for a frame).
    #[error("cannot encode the message: {0}")]
    Encode(#[from] ims_proto::ProtoError),
    /// The stream failed.
    #[error("writing to the edge failed: {0}")]
    Stream(#[from] quinn::WriteError),
    /// The edge did not read for [`WRITE_TIMEOUT`].
    #[error("the edge did not read for {}s", WRITE_TIMEOUT.as_secs())]
    Timeout,
}

/// Writes `msg` as one frame.
///
/// # Errors
/// See [`WriteError`].
pub async fn send(stream: &mut SendStream, msg: &ControlMessage) -> Result<(), WriteError> {
    let frame = encode_frame(msg)?;
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame))
        .await
        .map_err(|_| WriteError::Timeout)??;
    Ok(())
}

/// Sends `last` (when given), finishes the stream, waits up to [`LINGER`] for the edge to
/// receive it, and closes the connection with `code`.
pub async fn finish(
    conn: &Connection,
    stream: &mut SendStream,
    last: Option<&ControlMessage>,
    code: u32,
    reason: &str,
) {
    if let Some(msg) = last {
        if let Err(e) = send(stream, msg).await {
            tracing::debug!("could not send the final message: {e}");
        }
    }
    let _ = stream.finish();
    let _ = tokio::time::timeout(LINGER, stream.stopped()).await;
    conn.close(VarInt::from_u32(code), truncate(reason).as_bytes());
}

/// An [`ErrorReply`] without retry hint.
#[must_use]
pub fn reply(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        code,
        message: message.into(),
        retry_after_ms: None,
    }
}

/// The close code that goes with an error code.
#[must_use]
pub const fn close_code(code: ErrorCode) -> u32 {
    match code {
        ErrorCode::Unauthorized | ErrorCode::InvalidToken | ErrorCode::InvalidCsr => CLOSE_REFUSED,
        ErrorCode::Internal | ErrorCode::Unavailable => CLOSE_UNAVAILABLE,
        _ => CLOSE_PROTOCOL,
    }
}

/// Refuses a connection before its session starts: waits (bounded) for the edge's stream,
/// answers `error` on it and closes.
pub async fn refuse(conn: &Connection, error: ErrorReply) {
    let code = close_code(error.code);
    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok((mut send, _recv))) => {
            let reason = error.message.clone();
            finish(
                conn,
                &mut send,
                Some(&ControlMessage::Error(error)),
                code,
                &reason,
            )
            .await;
        }
        _ => conn.close(VarInt::from_u32(code), truncate(&error.message).as_bytes()),
    }
}

/// A close reason short enough for a CONNECTION_CLOSE frame.
fn truncate(reason: &str) -> &str {
    let mut end = reason.len().min(200);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_on_character_boundaries() {
        let long = "é".repeat(300);
        let cut = truncate(&long);
        assert!(cut.len() <= 200 && cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn refusals_close_with_the_refused_code() {
        assert_eq!(close_code(ErrorCode::Unauthorized), CLOSE_REFUSED);
        assert_eq!(close_code(ErrorCode::InvalidToken), CLOSE_REFUSED);
        assert_eq!(close_code(ErrorCode::BadMessage), CLOSE_PROTOCOL);
        assert_eq!(close_code(ErrorCode::Unavailable), CLOSE_UNAVAILABLE);
    }
}
