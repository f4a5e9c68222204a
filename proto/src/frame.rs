//! Framing: messages on a byte stream (one QUIC bidirectional stream per connection).
//!
//! ```text
//! +----------------------+------------------------------+
//! | length: u32, BE      | body: one CBOR message       |
//! | (4 bytes)            | (length bytes, 1 ..= limit)  |
//! +----------------------+------------------------------+
//! ```
//!
//! # Limits
//!
//! [`MAX_FRAME`] (16 MiB) is the hard ceiling: no frame is ever larger, in either direction. It
//! is sized for a [`Snapshot`](crate::Snapshot) of a large site (10,000 machines take about
//! 1 MiB). A decoder checks the announced length against its limit as soon as the 4-byte
//! header arrives, before buffering the body, and refuses the stream when it is exceeded.
//! Decoding can use several times the frame size in memory (every string becomes an
//! allocation), so each side should accept no more than it needs:
//!
//! | decoder | limit |
//! | --- | --- |
//! | edge, reading control messages | [`MAX_FRAME`] (snapshots) |
//! | control plane, reading edge messages | [`MAX_EDGE_FRAME`] (1 MiB) |
//! | control plane, enrolment connections (unauthenticated) | [`MAX_ENROLL_FRAME`] (64 KiB) |
//!
//! Senders check too: [`encode_frame_with_max`] refuses a message over the receiver's limit
//! (the edge sizes its event batches to fit [`MAX_EDGE_FRAME`]).
//!
//! # Decoding
//!
//! [`FrameDecoder`] is sans-IO: [`push`](FrameDecoder::push) the bytes read from the stream,
//! then [`pop`](FrameDecoder::pop) until it returns `Ok(None)` (more bytes needed). A
//! malformed frame yields [`ProtoError::Malformed`] and is skipped (the length prefix keeps the
//! stream in sync); an oversized one yields [`ProtoError::FrameTooLarge`] from then on
//! ([`ProtoError::is_fatal`]): close the connection. Nothing panics, whatever the input.

use std::marker::PhantomData;

use crate::codec::{Message, ProtoError, decode_message, encode_into};

/// Hard ceiling on a frame body, bytes (16 MiB). See the module docs.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest frame the control plane accepts from an edge, bytes (1 MiB).
pub const MAX_EDGE_FRAME: usize = 1024 * 1024;

/// Largest frame accepted on an enrolment connection, bytes (64 KiB).
pub const MAX_ENROLL_FRAME: usize = 64 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Encode `msg` as one frame (length prefix + CBOR body), at most [`MAX_FRAME`] bytes of body.
///
/// # Errors
/// [`ProtoError::Encode`] for an `Unknown` variant, [`ProtoError::TooLargeToSend`] above the
/// limit.
pub fn encode_frame<M: Message>(msg: &M) -> Result<Vec<u8>, ProtoError> {
    encode_frame_with_max(msg, MAX_FRAME)
}

/// Encode `msg` as one frame whose body is at most `max` bytes (clamped to [`MAX_FRAME`]); use
/// the receiver's limit, such as [`MAX_EDGE_FRAME`] for edge messages.
///
/// # Errors
/// As [`encode_frame`].
pub fn encode_frame_with_max<M: Message>(msg: &M, max: usize) -> Result<Vec<u8>, ProtoError> {
    let max = max.min(MAX_FRAME);
    let mut out = vec![0; FRAME_HEADER_LEN];
    encode_into(msg, &mut out)?;
    let len = out.len() - FRAME_HEADER_LEN;
    let header = u32::try_from(len).ok().filter(|_| len <= max);
    let Some(header) = header else {
        return Err(ProtoError::TooLargeToSend {
            what: M::WHAT,
            kind: msg.message_kind().to_owned(),
            len,
            max,
        });
    };
    out[..FRAME_HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(out)
}

/// Sans-IO frame decoder for messages of type `M` ([`EdgeMessage`](crate::EdgeMessage) on the
/// control plane, [`ControlMessage`](crate::ControlMessage) on the edge). See the module docs.
///
/// ```
/// use ims_proto::{ControlMessage, EventsAck, FrameDecoder, encode_frame};
///
/// let frame = encode_frame(&ControlMessage::EventsAck(EventsAck { up_to: 7 })).unwrap();
/// let mut decoder = FrameDecoder::<ControlMessage>::new();
/// decoder.push(&frame[..3]); // partial input waits
/// assert_eq!(decoder.pop().unwrap(), None);
/// decoder.push(&frame[3..]);
/// assert_eq!(
///     decoder.pop().unwrap(),
///     Some(ControlMessage::EventsAck(EventsAck { up_to: 7 }))
/// );
/// assert_eq!(decoder.pop().unwrap(), None);
/// assert!(decoder.finish().is_ok());
/// ```
#[derive(Debug)]
pub struct FrameDecoder<M> {
    /// Received bytes; `buf[start..]` is not yet decoded.
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
    /// Set on a fatal error; every later `pop` returns it and `push` discards input.
    failed: Option<ProtoError>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message> Default for FrameDecoder<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Message> FrameDecoder<M> {
    /// A decoder accepting frames up to [`MAX_FRAME`].
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME)
    }

    /// A decoder accepting frames up to `max_frame` bytes of body (clamped to [`MAX_FRAME`]).
    pub fn with_max_frame(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame: max_frame.min(MAX_FRAME),
            failed: None,
            _message: PhantomData,
        }
    }

    /// The largest body this decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Add bytes read from the stream. Call [`FrameDecoder::pop`] until `Ok(None)` afterwards:
    /// the decoder holds what is pushed until it is popped. After a fatal error the bytes are
    /// discarded.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        // Refuse an oversized frame as soon as its header is here, before buffering its body.
        if let Some(len) = self.next_len() {
            if len > self.max_frame as u64 {
                self.fail(len);
            }
        }
    }

    /// The next complete message: `Ok(Some(msg))`, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`ProtoError::Malformed`] for a frame that does not hold a valid message (the frame is
    /// consumed: call `pop` again for the next one); [`ProtoError::FrameTooLarge`] for a frame
    /// over the limit (fatal: returned from then on).
    pub fn pop(&mut self) -> Result<Option<M>, ProtoError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        if len > self.max_frame as u64 {
            return Err(self.fail(len));
        }
        // `len <= max_frame <= MAX_FRAME`, so it fits a usize.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let body_start = self.start + FRAME_HEADER_LEN;
        let Some(body) = self.buf.get(body_start..body_start.saturating_add(len)) else {
            return Ok(None);
        };
        let result = if body.is_empty() {
            Err(ProtoError::Malformed {
                what: M::WHAT,
                len: 0,
                reason: "empty frame".to_owned(),
            })
        } else {
            decode_message(body)
        };
        self.start = body_start + len;
        result.map(Some)
    }

    /// Bytes received and not yet decoded (a partial frame, or frames not yet popped).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Check, when the stream has ended, that it ended between frames.
    ///
    /// # Errors
    /// [`ProtoError::Truncated`] when a partial frame is buffered; the fatal error if one
    /// happened.
    pub fn finish(&self) -> Result<(), ProtoError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(ProtoError::Truncated { buffered }),
        }
    }

    /// The announced body length of the next frame, once its header is buffered.
    fn next_len(&self) -> Option<u64> {
        let header = self.buf.get(self.start..self.start + FRAME_HEADER_LEN)?;
        let header: [u8; FRAME_HEADER_LEN] = header.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(header)))
    }

    fn fail(&mut self, len: u64) -> ProtoError {
        let err = ProtoError::FrameTooLarge {
            len,
            max: self.max_frame,
        };
        self.failed = Some(err.clone());
        self.buf = Vec::new();
        self.start = 0;
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlMessage, EdgeMessage, EventsAck, Heartbeat, SnapshotAck};

    fn ack(up_to: u64) -> ControlMessage {
        ControlMessage::EventsAck(EventsAck { up_to })
    }

    #[test]
    fn frames_have_a_big_endian_length_prefix() {
        let frame = encode_frame(&ack(1)).unwrap();
        let body = crate::encode_message(&ack(1)).unwrap();
        assert_eq!(&frame[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(&frame[4..], &body[..]);
    }

    #[test]
    fn decodes_many_frames_from_one_push_and_byte_by_byte() {
        let msgs: Vec<ControlMessage> = (0..50).map(ack).collect();
        let stream: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect();

        let mut whole = FrameDecoder::<ControlMessage>::new();
        whole.push(&stream);
        let mut got = Vec::new();
        while let Some(m) = whole.pop().unwrap() {
            got.push(m);
        }
        assert_eq!(got, msgs);
        assert_eq!(whole.buffered(), 0);

        let mut bytewise = FrameDecoder::<ControlMessage>::new();
        let mut got = Vec::new();
        for b in &stream {
            bytewise.push(std::slice::from_ref(b));
            while let Some(m) = bytewise.pop().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        assert!(bytewise.finish().is_ok());
        // Compaction keeps the buffer from growing with the stream.
        assert!(
            bytewise.buf.capacity() < stream.len(),
            "{}",
            bytewise.buf.capacity()
        );
    }

    #[test]
    fn oversize_is_refused_before_the_body_arrives_and_is_fatal() {
        let mut dec = FrameDecoder::<EdgeMessage>::with_max_frame(MAX_EDGE_FRAME);
        dec.push(&(MAX_EDGE_FRAME as u32 + 1).to_be_bytes());
        assert_eq!(dec.buffered(), 0, "nothing of the refused frame is kept");
        let err = dec.pop().unwrap_err();
        assert_eq!(
            err,
            ProtoError::FrameTooLarge {
                len: MAX_EDGE_FRAME as u64 + 1,
                max: MAX_EDGE_FRAME
            }
        );
        assert!(err.is_fatal());
        assert!(err.to_string().contains("1048576-byte limit"), "{err}");
        let good = encode_frame(&EdgeMessage::SnapshotAck(SnapshotAck { generation: 1 })).unwrap();
        dec.push(&good);
        assert_eq!(dec.pop().unwrap_err(), err, "stays failed");
        assert_eq!(dec.finish().unwrap_err(), err);

        // The limit is clamped to MAX_FRAME, and u32::MAX is refused.
        let mut dec = FrameDecoder::<EdgeMessage>::with_max_frame(usize::MAX);
        assert_eq!(dec.max_frame(), MAX_FRAME);
        dec.push(&[0xff, 0xff]);
        assert_eq!(dec.pop().unwrap(), None);
        dec.push(&[0xff, 0xff]);
        assert!(matches!(dec.pop(), Err(ProtoError::FrameTooLarge { .. })));

        // A frame exactly at the limit is accepted (as far as framing goes).
        let mut dec = FrameDecoder::<EdgeMessage>::with_max_frame(16);
        dec.push(&16u32.to_be_bytes());
        dec.push(&[0u8; 15]);
        assert_eq!(dec.pop().unwrap(), None);
        dec.push(&[0]);
        assert!(matches!(
            dec.pop(),
            Err(ProtoError::Malformed { len: 16, .. })
        ));
    }

    #[test]
    fn malformed_and_empty_frames_are_skipped() {
        let mut dec = FrameDecoder::<ControlMessage>::new();
        dec.push(&[0, 0, 0, 0]);
        dec.push(&[0, 0, 0, 2, 0xff, 0xff]);
        dec.push(&encode_frame(&ack(9)).unwrap());
        let err = dec.pop().unwrap_err();
        assert!(err.to_string().contains("empty frame"), "{err}");
        assert!(!err.is_fatal());
        assert!(matches!(
            dec.pop(),
            Err(ProtoError::Malformed { len: 2, .. })
        ));
        assert_eq!(dec.pop().unwrap(), Some(ack(9)));
        assert_eq!(dec.pop().unwrap(), None);
    }

    #[test]
    fn truncated_stream_is_reported_by_finish() {
        let mut dec = FrameDecoder::<ControlMessage>::new();
        let frame = encode_frame(&ack(3)).unwrap();
        dec.push(&frame[..frame.len() - 1]);
        assert_eq!(dec.pop().unwrap(), None);
        let err = dec.finish().unwrap_err();
        assert_eq!(
            err,
            ProtoError::Truncated {
                buffered: frame.len() - 1
            }
        );
        assert!(err.to_string().contains("closed mid-message"), "{err}");
    }

    #[test]
    fn senders_respect_the_receivers_limit() {
        let big = EdgeMessage::Heartbeat(Heartbeat {
            seq: 1,
            services: (0..200)
                .map(|i| (format!("service-{i:04}"), Default::default()))
                .collect(),
            metrics: Default::default(),
        });
        let frame = encode_frame(&big).unwrap();
        let err = encode_frame_with_max(&big, 100).unwrap_err();
        assert_eq!(
            err,
            ProtoError::TooLargeToSend {
                what: "edge message",
                kind: "Heartbeat".into(),
                len: frame.len() - FRAME_HEADER_LEN,
                max: 100
            }
        );
        assert!(err.to_string().contains("smaller parts"), "{err}");
    }
}
