//! Packet parse/emit.

use proptest::prelude::*;

use super::super::wire::{MAX_OPTIONS, Packet, WireError, code, emit_ack, emit_data_header, parse};
use super::*;

#[test]
fn rrq_mode_and_option_names_are_lowercased_in_order() {
    let p =
        parse(b"\0\x01pxelinux.0\0OcTeT\0BLKSIZE\x001428\0tsize\x000\0WindowSize\x004\0").unwrap();
    let Packet::Rrq(r) = p else { panic!("{p:?}") };
    assert_eq!(r.filename, b"pxelinux.0");
    assert_eq!(r.mode, b"octet");
    assert_eq!(r.served_mode(), Some(Mode::Octet));
    let names: Vec<_> = r
        .options
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        names,
        [("blksize", "1428"), ("tsize", "0"), ("windowsize", "4")]
    );
}

#[test]
fn request_padding_and_trailing_fragments_are_tolerated() {
    // Some boot ROMs pad requests with NULs or leave a dangling option name.
    let Packet::Rrq(r) = parse(b"\0\x01f\0netascii\0\0\0\0").unwrap() else {
        panic!()
    };
    assert_eq!(
        (r.served_mode(), r.options.len()),
        (Some(Mode::Netascii), 0)
    );
    let Packet::Rrq(r) = parse(b"\0\x01f\0octet\0blksize\x00512\0tsize").unwrap() else {
        panic!()
    };
    assert_eq!(r.options.len(), 1);
    let Packet::Wrq(r) = parse(b"\0\x02f\0mail\0").unwrap() else {
        panic!()
    };
    assert_eq!(r.served_mode(), None);
}

#[test]
fn malformed_packets_are_errors() {
    assert_eq!(parse(b""), Err(WireError::Truncated));
    assert_eq!(parse(b"\0"), Err(WireError::Truncated));
    assert_eq!(parse(b"\0\x07"), Err(WireError::UnknownOpcode(7)));
    assert_eq!(parse(b"\0\x01file"), Err(WireError::MissingNul));
    assert_eq!(parse(b"\0\x01file\0octet"), Err(WireError::MissingNul));
    assert_eq!(parse(b"\0\x04\0"), Err(WireError::Truncated));
    assert_eq!(parse(b"\0\x04\0\x01\0"), Err(WireError::Trailing));
    assert_eq!(parse(b"\0\x03\0"), Err(WireError::Truncated));
    assert_eq!(parse(b"\0\x05\0"), Err(WireError::Truncated));
    let mut many = b"\0\x01f\0octet\0".to_vec();
    for i in 0..=MAX_OPTIONS {
        many.extend_from_slice(format!("o{i}\0{i}\0").as_bytes());
    }
    assert_eq!(parse(&many), Err(WireError::TooManyOptions));
}

#[test]
fn fixed_packets_encode_as_rfc_1350() {
    assert_eq!(emit_data_header(0x1234), [0, 3, 0x12, 0x34]);
    assert_eq!(emit_ack(65535), [0, 4, 0xff, 0xff]);
    assert_eq!(parse(&emit_ack(7)), Ok(Packet::Ack { block: 7 }));
    assert_eq!(
        wire::emit_error(code::FILE_NOT_FOUND, "nope"),
        b"\0\x05\0\x01nope\0"
    );
    // A message without its NUL is still read.
    assert_eq!(
        parse(b"\0\x05\0\x08abc"),
        Ok(Packet::Error {
            code: 8,
            message: "abc".into()
        })
    );
    let oack = wire::emit_oack(&[
        ("blksize".into(), "1428".into()),
        ("tsize".into(), "99".into()),
    ]);
    assert_eq!(oack, b"\0\x06blksize\x001428\0tsize\x0099\0");
    let data = Packet::Data {
        block: 9,
        data: b"xyz".to_vec(),
    };
    assert_eq!(data.emit(), b"\0\x03\0\x09xyz");
    assert_eq!(parse(&data.emit()), Ok(data));
}

#[test]
fn emit_cuts_strings_at_nul() {
    let e = wire::emit_error(0, "a\0b");
    assert_eq!(e, b"\0\x05\0\0a\0");
}

fn any_packet() -> impl Strategy<Value = Packet> {
    let text = "[a-zA-Z0-9./_-]{0,12}";
    let opts = proptest::collection::vec((text, text), 0..4);
    let req = (
        proptest::collection::vec(1u8..=255, 0..20),
        "[a-z]{0,8}",
        opts.clone(),
    )
        .prop_map(|(filename, mode, options)| Request {
            filename,
            mode: mode.into_bytes(),
            options: options
                .into_iter()
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
        });
    prop_oneof![
        req.clone().prop_map(Packet::Rrq),
        req.prop_map(Packet::Wrq),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(block, data)| Packet::Data { block, data }),
        any::<u16>().prop_map(|block| Packet::Ack { block }),
        (any::<u16>(), "[ -~]{0,30}").prop_map(|(code, message)| Packet::Error { code, message }),
        opts.prop_map(|o| Packet::Oack {
            options: o
                .into_iter()
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect()
        }),
    ]
}

proptest! {
    /// Parsing arbitrary bytes never panics; whatever parses re-encodes to something that parses
    /// to the same packet.
    #[test]
    fn parse_is_total_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(p) = parse(&bytes) {
            prop_assert_eq!(parse(&p.emit()), Ok(p));
        }
    }

    /// Emitting a packet and parsing it gives it back.
    #[test]
    fn emit_then_parse_is_identity(p in any_packet()) {
        prop_assert_eq!(parse(&p.emit()), Ok(p));
    }
}
