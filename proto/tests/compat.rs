//! Forward compatibility: what a newer peer sends (extra fields, unknown message kinds, event
//! kinds and enum values) decodes on this build, and what an older peer omits gets defaults.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use ciborium::Value;
use common::samples;
use ims_proto::*;

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn to_value<M: Message>(msg: &M) -> Value {
    ciborium::from_reader(&encode_message(msg).unwrap()[..]).unwrap()
}

/// A field a newer minor might add: some nesting, several types.
fn future_field() -> Value {
    Value::Array(vec![
        int(-1),
        text("x"),
        Value::Bytes(vec![1, 2]),
        Value::Float(1.5),
        Value::Null,
        map(vec![("deep", map(vec![("deeper", Value::Bool(true))]))]),
    ])
}

/// Add unknown fields to every struct in `value`: right after the `type` tag (or first) and at
/// the end. Skips maps that are not structs: the `services` map itself (its values are
/// structs) and serde's `{"V4": ...}` / `{"V6": ...}` address enums.
fn add_future_fields(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(add_future_fields),
        Value::Map(entries) => {
            let is_address =
                entries.len() == 1 && matches!(entries[0].0.as_text(), Some("V4" | "V6"));
            if is_address {
                return;
            }
            for (key, v) in entries.iter_mut() {
                if key.as_text() == Some("services") {
                    if let Value::Map(services) = v {
                        for (_, status) in services.iter_mut() {
                            add_future_fields(status);
                        }
                    }
                } else {
                    add_future_fields(v);
                }
            }
            let at = usize::from(entries.first().and_then(|(k, _)| k.as_text()) == Some("type"));
            entries.insert(at, (text("added_in_1_9"), future_field()));
            entries.push((text("zz_also_new"), int(7)));
        }
        _ => {}
    }
}

#[test]
fn every_struct_ignores_fields_from_a_newer_minor() {
    for (name, msg) in samples() {
        let mut value = match &msg {
            common::AnyMessage::Edge(m) => to_value(m),
            common::AnyMessage::Control(m) => to_value(m),
        };
        add_future_fields(&mut value);
        let bytes = cbor(&value);
        assert!(
            bytes.len() > msg.encode().len(),
            "{name}: nothing was added"
        );
        let decoded = msg
            .decode_like(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, msg, "{name}");
    }
}

#[test]
fn unknown_edge_message_kind_decodes_as_unknown_and_the_stream_goes_on() {
    let future = map(vec![
        ("type", text("CapacityReport")),
        ("slots", int(12)),
        ("detail", future_field()),
    ]);
    let body = cbor(&future);
    assert_eq!(
        decode_message::<EdgeMessage>(&body).unwrap(),
        EdgeMessage::Unknown {
            kind: "CapacityReport".into()
        }
    );
    // In a stream: the next message still decodes.
    let mut stream = (body.len() as u32).to_be_bytes().to_vec();
    stream.extend(&body);
    let ack = EdgeMessage::SnapshotAck(SnapshotAck { generation: 3 });
    stream.extend(encode_frame(&ack).unwrap());
    let mut dec = FrameDecoder::<EdgeMessage>::new();
    dec.push(&stream);
    let first = dec.pop().unwrap().unwrap();
    assert!(first.is_unknown());
    assert_eq!(first.kind(), "CapacityReport");
    assert_eq!(dec.pop().unwrap(), Some(ack));
}

#[test]
fn unknown_control_message_kind_decodes_as_unknown() {
    let future = map(vec![
        ("type", text("Reboot")),
        ("mac", text("52:54:00:12:34:56")),
    ]);
    let msg = decode_message::<ControlMessage>(&cbor(&future)).unwrap();
    assert_eq!(
        msg,
        ControlMessage::Unknown {
            kind: "Reboot".into()
        }
    );
    // A bare tag with nothing else is fine too.
    let bare = map(vec![("type", text("Noop"))]);
    assert!(
        decode_message::<ControlMessage>(&cbor(&bare))
            .unwrap()
            .is_unknown()
    );
    // "Unknown" itself is not a kind anyone sends: it decodes as an unknown kind named so.
    let named = map(vec![("type", text("Unknown")), ("kind", text("x"))]);
    assert_eq!(
        decode_message::<ControlMessage>(&cbor(&named)).unwrap(),
        ControlMessage::Unknown {
            kind: "Unknown".into()
        }
    );
}

#[test]
fn unknown_event_kind_decodes_as_unknown_inside_a_batch() {
    let known = EdgeEvent {
        id: 1,
        at_ms: 1000,
        kind: EdgeEventKind::ServiceError(ServiceError {
            service: "dhcp".into(),
            message: "boom".into(),
        }),
    };
    let mut value = to_value(&EdgeMessage::Events(EventBatch {
        batch: vec![known.clone()],
    }));
    let Value::Map(entries) = &mut value else {
        panic!("not a map")
    };
    let Value::Array(batch) = &mut entries[1].1 else {
        panic!("batch is not an array")
    };
    batch.push(map(vec![
        ("id", int(2)),
        ("at_ms", int(2000)),
        (
            "kind",
            map(vec![
                ("type", text("DiskWiped")),
                ("mac", text("52:54:00:12:34:56")),
                ("disks", Value::Array(vec![text("sda"), text("sdb")])),
            ]),
        ),
    ]));
    let msg = decode_message::<EdgeMessage>(&cbor(&value)).unwrap();
    let EdgeMessage::Events(batch) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(batch.batch.len(), 2);
    assert_eq!(batch.batch[0], known);
    assert_eq!(batch.batch[1].id, 2);
    assert_eq!(
        batch.batch[1].kind,
        EdgeEventKind::Unknown {
            kind: "DiskWiped".into()
        }
    );
    assert_eq!(batch.batch[1].kind.mac(), None);
}

#[test]
fn unknown_service_state_decodes_as_unknown() {
    let hb = map(vec![
        ("type", text("Heartbeat")),
        ("seq", int(1)),
        (
            "services",
            map(vec![
                ("dhcp", map(vec![("state", text("Hibernating"))])),
                ("tftp", map(vec![("state", text("Running"))])),
            ]),
        ),
    ]);
    let EdgeMessage::Heartbeat(hb) = decode_message::<EdgeMessage>(&cbor(&hb)).unwrap() else {
        panic!("not a heartbeat")
    };
    assert_eq!(hb.services["dhcp"].state, ServiceState::Unknown);
    assert_eq!(hb.services["tftp"].state, ServiceState::Running);
    assert_eq!(
        hb.metrics,
        Metrics::default(),
        "missing metrics default to 0"
    );
}

#[test]
fn unknown_error_code_decodes_as_unknown() {
    let err = map(vec![
        ("type", text("Error")),
        ("code", text("QuotaExceeded")),
        ("message", text("too many edges for this site")),
    ]);
    let msg = decode_message::<ControlMessage>(&cbor(&err)).unwrap();
    assert_eq!(
        msg,
        ControlMessage::Error(ErrorReply {
            code: ErrorCode::Unknown,
            message: "too many edges for this site".into(),
            retry_after_ms: None,
        })
    );
}

#[test]
fn fields_an_older_peer_omits_get_defaults() {
    let hello = map(vec![
        ("type", text("Hello")),
        ("version", map(vec![("major", int(1))])),
        ("software_version", text("0.0.9")),
        ("hostname", text("old-edge")),
    ]);
    assert_eq!(
        decode_message::<EdgeMessage>(&cbor(&hello)).unwrap(),
        EdgeMessage::Hello(Hello {
            version: ProtocolVersion::new(1, 0),
            software_version: "0.0.9".into(),
            hostname: "old-edge".into(),
            ..Default::default()
        })
    );
    let metrics = map(vec![
        ("type", text("Heartbeat")),
        ("seq", int(2)),
        ("metrics", map(vec![("active_leases", int(5))])),
    ]);
    let EdgeMessage::Heartbeat(hb) = decode_message::<EdgeMessage>(&cbor(&metrics)).unwrap() else {
        panic!("not a heartbeat")
    };
    assert_eq!(hb.metrics.active_leases, 5);
    assert_eq!(hb.metrics.outbox_depth, 0);
}

#[test]
fn required_fields_and_tag_order_are_enforced() {
    // A known kind missing a required field is malformed, naming the field.
    let no_up_to = map(vec![("type", text("EventsAck"))]);
    let err = decode_message::<ControlMessage>(&cbor(&no_up_to)).unwrap_err();
    assert!(err.to_string().contains("up_to"), "{err}");
    // The tag must come first.
    let late_tag = map(vec![("up_to", int(1)), ("type", text("EventsAck"))]);
    let err = decode_message::<ControlMessage>(&cbor(&late_tag)).unwrap_err();
    assert!(
        err.to_string().contains("first entry must be \"type\""),
        "{err}"
    );
    // A known kind with a wrongly typed field is malformed.
    let bad = map(vec![("type", text("EventsAck")), ("up_to", text("many"))]);
    assert!(decode_message::<ControlMessage>(&cbor(&bad)).is_err());
}
