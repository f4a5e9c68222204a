//! Golden fixtures: `tests/fixtures/<name>.cbor` holds the encoding of every message and event
//! kind, committed. Every fixture decodes to its expected value (in `common::samples`) forever,
//! and re-encodes byte-exactly.
//!
//! Write missing fixtures (and the `proto_frame` fuzz seeds made from them) with
//!
//! ```sh
//! IMS_BLESS=1 cargo test -p ims-proto --test fixtures
//! ```
//!
//! Blessing never rewrites an existing file: a fixture that no longer matches means the wire
//! format changed, which a minor version must not do. When a minor version adds a field, keep
//! the old fixtures (their expected values get the field's default) and add new ones under new
//! names; when they must stop re-encoding byte-exactly, list them in `DECODE_ONLY`.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{AnyMessage, samples};
use ims_proto::{ControlMessage, EdgeEventKind, EdgeMessage};

/// Fixtures from older minors that decode but no longer re-encode to the same bytes.
const DECODE_ONLY: &[&str] = &[];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/proto_frame")
}

fn blessing() -> bool {
    std::env::var_os("IMS_BLESS").is_some_and(|v| v == "1")
}

/// Check `path` holds `bytes`; when blessing, create it if missing. Never overwrites.
fn check_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    match fs::read(path) {
        Ok(stored) if stored == bytes => Ok(()),
        Ok(_) => Err(format!(
            "{} differs from the current encoding: the wire format changed. Existing fixtures are \
             never rewritten; if this is a deliberate, unreleased change, delete the file and \
             bless again",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && blessing() => {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
            Ok(())
        }
        Err(e) => Err(format!(
            "{}: {e}; write missing fixtures with IMS_BLESS=1 cargo test -p ims-proto --test fixtures",
            path.display()
        )),
    }
}

#[test]
fn golden_fixtures_decode_forever() {
    let mut failures = Vec::new();
    for (name, expected) in samples() {
        let path = fixtures_dir().join(format!("{name}.cbor"));
        let encoded = expected.encode();
        if !DECODE_ONLY.contains(&name.as_str()) {
            if let Err(e) = check_file(&path, &encoded) {
                failures.push(e);
                continue;
            }
        }
        let stored = match fs::read(&path) {
            Ok(stored) => stored,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match expected.decode_like(&stored) {
            Ok(decoded) if decoded == expected => {}
            Ok(decoded) => failures.push(format!(
                "{name}: decodes to\n{decoded:#?}\nexpected\n{expected:#?}"
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_fixture_file_has_an_expected_value() {
    let names: BTreeSet<String> = samples().into_iter().map(|(n, _)| n).collect();
    let mut orphans = Vec::new();
    for entry in fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "cbor") && !names.contains(&stem) {
            orphans.push(stem);
        }
    }
    assert!(
        orphans.is_empty(),
        "fixtures without an expected value (never delete an expected value): {orphans:?}"
    );
}

#[test]
fn fixtures_cover_every_message_and_event_kind() {
    let samples = samples();
    let mut edge = BTreeSet::new();
    let mut control = BTreeSet::new();
    let mut events = BTreeSet::new();
    for (_, msg) in &samples {
        match msg {
            AnyMessage::Edge(m) => {
                edge.insert(m.kind().to_owned());
                if let EdgeMessage::Events(batch) = m {
                    events.extend(batch.batch.iter().map(|e| e.kind.kind().to_owned()));
                }
            }
            AnyMessage::Control(m) => {
                control.insert(m.kind().to_owned());
            }
        }
    }
    let all = |kinds: &[&str]| {
        kinds
            .iter()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(edge, all(EdgeMessage::KINDS));
    assert_eq!(control, all(ControlMessage::KINDS));
    assert_eq!(events, all(EdgeEventKind::KINDS));
    // Each event kind also has a fixture of its own.
    for kind in EdgeEventKind::KINDS {
        let single = samples.iter().any(|(_, m)| {
            matches!(m, AnyMessage::Edge(EdgeMessage::Events(b))
                if b.batch.len() == 1 && b.batch[0].kind.kind() == *kind)
        });
        assert!(single, "no single-event fixture for {kind}");
    }
}

/// The `proto_frame` fuzz target's seeds are the fixtures as frames.
#[test]
fn fuzz_seed_corpus_matches_the_fixtures() {
    let mut failures = Vec::new();
    for (name, msg) in samples() {
        if let Err(e) = check_file(&corpus_dir().join(&name), &msg.frame()) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
