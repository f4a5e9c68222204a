//! Property tests: every message survives encode → decode; the frame decoder yields the same
//! messages however the stream is split; arbitrary and mutated bytes never panic; deltas
//! computed between snapshots apply back.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::strategies::{any_message, edge_message, snapshot};
use common::{AnyMessage, samples};
use ims_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// Split `bytes` at the given (unsorted, possibly out-of-range) points.
fn chunks(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.iter_mut().for_each(|c| *c %= bytes.len() + 1);
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        out.push(&bytes[at..cut]);
        at = cut;
    }
    out.push(&bytes[at..]);
    out
}

/// Push `chunks` one by one, popping after each; return every result (as text, so errors and
/// messages compare alike).
fn decode_stream<M: Message + std::fmt::Debug>(chunks: &[&[u8]], max: usize) -> Vec<String> {
    let mut dec = FrameDecoder::<M>::with_max_frame(max);
    let mut out = Vec::new();
    for chunk in chunks {
        dec.push(chunk);
        loop {
            match dec.pop() {
                Ok(Some(m)) => out.push(format!("{m:?}")),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error: {e}"));
                    if e.is_fatal() {
                        return out;
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip(msg in any_message()) {
        let body = msg.encode();
        let decoded = msg.decode_like(&body).unwrap();
        prop_assert_eq!(&decoded, &msg);
        prop_assert_eq!(decoded.encode(), body, "re-encoding is byte-exact");
        let frame = msg.frame();
        prop_assert_eq!(&frame[..4], &(frame.len() as u32 - 4).to_be_bytes()[..]);
    }

    #[test]
    fn any_split_of_a_stream_yields_the_same_messages(
        msgs in vec(edge_message(), 1..6),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
        let mut dec = FrameDecoder::<EdgeMessage>::new();
        let mut got = Vec::new();
        for chunk in chunks(&stream, cuts) {
            dec.push(chunk);
            while let Some(m) = dec.pop().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(dec.finish().is_ok());
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_splits_do_not_matter(
        bytes in vec(any::<u8>(), 0..512),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let _ = decode_message::<EdgeMessage>(&bytes);
        let _ = decode_message::<ControlMessage>(&bytes);
        let whole = decode_stream::<ControlMessage>(&[&bytes], 256);
        let split = decode_stream::<ControlMessage>(&chunks(&bytes, cuts), 256);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn mutated_fixture_frames_never_panic_and_splits_do_not_matter(
        which in any::<prop::sample::Index>(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let all = samples();
        let (_, msg) = &all[which.index(all.len())];
        let mut frame = msg.frame();
        // Keep the length prefix mostly valid so the body reaches the CBOR decoder.
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = if i < 4 { frame[i] } else { byte };
        }
        let (whole, split) = match msg {
            AnyMessage::Edge(_) => (
                decode_stream::<EdgeMessage>(&[&frame], MAX_FRAME),
                decode_stream::<EdgeMessage>(&chunks(&frame, cuts), MAX_FRAME),
            ),
            AnyMessage::Control(_) => (
                decode_stream::<ControlMessage>(&[&frame], MAX_FRAME),
                decode_stream::<ControlMessage>(&chunks(&frame, cuts), MAX_FRAME),
            ),
        };
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn delta_between_snapshots_applies_back(old in snapshot(), new in snapshot()) {
        let delta = Delta::between(&old, &new);
        let mut applied = old.clone();
        applied.apply_delta(&delta).unwrap();
        let mut expected = new.clone();
        expected.normalize();
        prop_assert_eq!(&applied, &expected);
        prop_assert!(Delta::between(&applied, &expected).is_empty());
        let mut other = old.clone();
        other.generation = old.generation.wrapping_add(1);
        prop_assert!(other.apply_delta(&delta).is_err(), "a delta applies only to its base");
        prop_assert_eq!(other.generation, old.generation.wrapping_add(1));
    }
}
