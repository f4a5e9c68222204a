//! The uplink codec on arbitrary streams: `FrameDecoder` for both directions, fed the input in
//! one piece and in small pieces. Never panics; both feedings yield the same results; every
//! decoded message re-encodes (unless it holds an `Unknown` from a "newer peer", which cannot
//! be sent), and the re-encoding decodes to the same bytes again.
#![no_main]

use std::fmt::Debug;

use ims_proto::{ControlMessage, EdgeMessage, FrameDecoder, Message, ProtoError};
use ims_proto::{decode_message, encode_message};
use libfuzzer_sys::fuzz_target;

/// Push `chunks`, popping after each push; the results as text (messages and errors alike).
fn run<M: Message + Debug>(chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<String> {
    let mut dec = FrameDecoder::<M>::new();
    let mut out = Vec::new();
    for chunk in chunks {
        dec.push(chunk);
        loop {
            match dec.pop() {
                Ok(Some(msg)) => {
                    check_reencode(&msg);
                    out.push(format!("{msg:?}"));
                }
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
    if let Err(e) = dec.finish() {
        out.push(format!("end: {e}"));
    }
    out
}

fn check_reencode<M: Message + Debug>(msg: &M) {
    let body = match encode_message(msg) {
        Ok(body) => body,
        Err(ProtoError::Encode { reason, .. }) => {
            assert!(
                reason.contains("cannot be serialized"),
                "only Unknown variants may fail to encode: {reason} ({msg:?})"
            );
            return;
        }
        Err(e) => panic!("unexpected encode error {e} for {msg:?}"),
    };
    let again: M =
        decode_message(&body).unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
    let body2 = encode_message(&again).expect("a decoded re-encoding encodes");
    assert_eq!(
        body, body2,
        "encode(decode(encode(m))) != encode(m) for {msg:?}"
    );
}

fn compare<M: Message + Debug>(data: &[u8]) {
    let whole = run::<M>(&mut std::iter::once(data));
    let step = usize::from(data.first().copied().unwrap_or(1) % 7) + 1;
    let split = run::<M>(&mut data.chunks(step));
    assert_eq!(
        whole, split,
        "results depend on how the stream is split (step {step})"
    );
}

fuzz_target!(|data: &[u8]| {
    compare::<EdgeMessage>(data);
    compare::<ControlMessage>(data);
});
