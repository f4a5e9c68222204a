//! The message encoding: one CBOR item per message (RFC 8949), via serde and `ciborium`.
//!
//! [`encode_message`] / [`decode_message`] handle one message body; [`crate::frame`] adds
//! the length prefix for streams. Decoding never panics: malformed input, trailing bytes,
//! nesting deeper than [`MAX_NESTING`] levels and wrong types are all [`ProtoError::Malformed`].

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ControlMessage, EdgeMessage};

/// Deepest nesting of arrays, maps and tags a message may have. Ours nest a handful of levels;
/// the limit keeps hostile input from exhausting the stack.
pub const MAX_NESTING: usize = 64;

/// A top-level message type: [`EdgeMessage`] or [`ControlMessage`]. Sealed.
pub trait Message: Serialize + DeserializeOwned + sealed::Sealed {
    /// What it is, for error messages (`"edge message"`).
    const WHAT: &'static str;

    /// The message's kind (its `type` on the wire), for logs and metrics.
    fn message_kind(&self) -> &str;
}

impl Message for EdgeMessage {
    const WHAT: &'static str = "edge message";

    fn message_kind(&self) -> &str {
        self.kind()
    }
}

impl Message for ControlMessage {
    const WHAT: &'static str = "control message";

    fn message_kind(&self) -> &str {
        self.kind()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::EdgeMessage {}
    impl Sealed for crate::ControlMessage {}
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A frame header announced more bytes than the decoder accepts. The stream cannot be
    /// resynchronised: close the connection.
    #[error(
        "incoming frame of {len} bytes exceeds the {max}-byte limit: the peer sent more than \
         this side accepts (or is not speaking ims-uplink); closing the connection"
    )]
    FrameTooLarge {
        /// Announced body length.
        len: u64,
        /// The decoder's limit.
        max: usize,
    },
    /// A frame (or message body) is not a valid message. The frame was consumed; the stream
    /// stays in sync and later frames still decode.
    #[error("malformed {what} ({len} bytes): {reason}")]
    Malformed {
        /// `"edge message"` or `"control message"`.
        what: &'static str,
        /// Body length.
        len: usize,
        /// What was wrong.
        reason: String,
    },
    /// The stream ended inside a frame.
    #[error(
        "stream ended inside a frame ({buffered} bytes of an incomplete frame buffered): the \
         peer closed mid-message"
    )]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode {what} {kind}: {reason}")]
    Encode {
        /// `"edge message"` or `"control message"`.
        what: &'static str,
        /// The message's kind.
        kind: String,
        /// Why (an `Unknown` variant received from a newer peer cannot be re-sent).
        reason: String,
    },
    /// An encoded message is larger than the frame limit.
    #[error(
        "{what} {kind} encodes to {len} bytes, more than the {max}-byte frame limit: send it in \
         smaller parts (for example fewer events per batch)"
    )]
    TooLargeToSend {
        /// `"edge message"` or `"control message"`.
        what: &'static str,
        /// The message's kind.
        kind: String,
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl ProtoError {
    /// Whether the stream is unusable after this error (close the connection). A
    /// [`ProtoError::Malformed`] frame is skipped and decoding continues.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::FrameTooLarge { .. } | Self::Truncated { .. })
    }
}

/// Encode one message as a CBOR body (no length prefix).
///
/// Encoding is deterministic: struct fields in declaration order, maps sorted by key.
///
/// # Errors
/// [`ProtoError::Encode`] when the message contains an `Unknown` variant (received from a
/// newer peer; it carries no data and cannot be re-sent).
pub fn encode_message<M: Message>(msg: &M) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::new();
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Append the CBOR of `msg` to `out`.
pub(crate) fn encode_into<M: Message>(msg: &M, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    ciborium::into_writer(msg, out).map_err(|e| ProtoError::Encode {
        what: M::WHAT,
        kind: msg.message_kind().to_owned(),
        reason: match e {
            ciborium::ser::Error::Value(reason) if reason.contains("::Unknown cannot be") => {
                format!(
                    "{reason}: it came from a newer peer and carries no data; drop it instead of \
                     sending it"
                )
            }
            ciborium::ser::Error::Value(reason) => reason,
            ciborium::ser::Error::Io(e) => e.to_string(),
        },
    })
}

/// Decode one message from a CBOR body (no length prefix). The body must hold exactly one
/// CBOR item.
///
/// Unknown fields are ignored and unknown kinds decode as `Unknown { kind }` (see the crate
/// docs).
///
/// # Errors
/// [`ProtoError::Malformed`] for anything that is not exactly one valid message.
pub fn decode_message<M: Message>(body: &[u8]) -> Result<M, ProtoError> {
    let malformed = |reason: String| ProtoError::Malformed {
        what: M::WHAT,
        len: body.len(),
        reason,
    };
    if body.is_empty() {
        return Err(malformed("empty body".to_owned()));
    }
    let mut rest = body;
    let msg: M = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_NESTING)
        .map_err(|e| malformed(describe(e)))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

fn describe(err: ciborium::de::Error<io::Error>) -> String {
    match err {
        ciborium::de::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the CBOR ends early (truncated)".to_owned()
        }
        ciborium::de::Error::Io(e) => format!("read error: {e}"),
        ciborium::de::Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), msg) => format!("{msg} (at byte {offset})"),
        ciborium::de::Error::Semantic(None, msg) => msg,
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("nested more than {MAX_NESTING} levels deep")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, ErrorReply, EventsAck};

    #[test]
    fn decode_rejects_garbage_clearly() {
        let ack = ControlMessage::EventsAck(EventsAck { up_to: 5 });
        let body = encode_message(&ack).unwrap();
        assert_eq!(decode_message::<ControlMessage>(&body).unwrap(), ack);

        let mut trailing = body.clone();
        trailing.push(0);
        let err = decode_message::<ControlMessage>(&trailing).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
        assert!(!err.is_fatal());

        let err = decode_message::<ControlMessage>(&body[..body.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let err = decode_message::<EdgeMessage>(&[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("malformed edge message (0 bytes): empty"),
            "{err}"
        );

        // 0xa1 = map(1): {"seq": 1}, no "type" first.
        let mut no_tag = vec![0xa1, 0x63];
        no_tag.extend_from_slice(b"seq");
        no_tag.push(0x01);
        let err = decode_message::<EdgeMessage>(&no_tag).unwrap_err();
        assert!(
            err.to_string().contains("first entry must be \"type\""),
            "{err}"
        );

        // An array, not a map.
        let err = decode_message::<EdgeMessage>(&[0x80]).unwrap_err();
        assert!(err.to_string().contains("edge message"), "{err}");
    }

    #[test]
    fn deep_nesting_and_huge_declared_lengths_are_errors_not_crashes() {
        // {"type": "Error", "x": [[[[...]]]]} nested 100k deep in an ignored field.
        let mut body = vec![0xa2];
        body.extend(cbor_text("type"));
        body.extend(cbor_text("Error"));
        body.extend(cbor_text("x"));
        body.extend(std::iter::repeat_n(0x81, 100_000));
        body.push(0x00);
        let err = decode_message::<ControlMessage>(&body).unwrap_err();
        assert!(err.to_string().contains("nested more than 64"), "{err}");

        // Tags nested 100k deep.
        let mut body = vec![0xa2];
        body.extend(cbor_text("type"));
        body.extend(cbor_text("Error"));
        body.extend(cbor_text("x"));
        body.extend(std::iter::repeat_n(0xc6, 100_000));
        body.push(0x00);
        assert!(decode_message::<ControlMessage>(&body).is_err());

        // A text string claiming 2^63 bytes, and an array claiming 2^63 elements.
        for header in [[0x7b_u8], [0x9b]] {
            let mut body = vec![0xa2];
            body.extend(cbor_text("type"));
            body.extend(cbor_text("Error"));
            body.extend(cbor_text("message"));
            body.extend(header);
            body.extend([0x80, 0, 0, 0, 0, 0, 0, 0]);
            body.extend(b"abc");
            let err = decode_message::<ControlMessage>(&body).unwrap_err();
            assert!(matches!(err, ProtoError::Malformed { .. }), "{err}");
        }
    }

    #[test]
    fn unknown_variants_cannot_be_sent() {
        let msg = EdgeMessage::Unknown {
            kind: "FromTheFuture".into(),
        };
        let err = encode_message(&msg).unwrap_err();
        assert!(
            matches!(&err, ProtoError::Encode { kind, .. } if kind == "FromTheFuture"),
            "{err}"
        );
        // The fuzz target relies on this wording to tell these apart from real failures.
        assert!(err.to_string().contains("cannot be serialized"), "{err}");
        assert!(err.to_string().contains("newer peer"), "{err}");
        let batch = EdgeMessage::Events(crate::EventBatch {
            batch: vec![crate::EdgeEvent {
                id: 1,
                at_ms: 0,
                kind: crate::EdgeEventKind::Unknown { kind: "X".into() },
            }],
        });
        let err = encode_message(&batch).unwrap_err();
        assert!(
            err.to_string()
                .contains("EdgeEventKind::Unknown cannot be serialized"),
            "{err}"
        );
        let nested = ControlMessage::Error(ErrorReply {
            code: ErrorCode::Unknown,
            message: "fine: unit Unknown travels as its name".into(),
            retry_after_ms: None,
        });
        assert!(encode_message(&nested).is_ok());
    }

    fn cbor_text(s: &str) -> Vec<u8> {
        assert!(s.len() < 24);
        let mut out = vec![0x60 | s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }
}
