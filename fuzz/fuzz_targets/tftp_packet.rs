//! TFTP packet parsing on arbitrary bytes: `wire::parse` never panics, and whatever it accepts
//! survives `emit` + `parse` unchanged (and re-emits byte-identically). The same bytes also go
//! through `path::normalize`, whose accepted output must be clean and stable, and through
//! `netascii::encode`, whose length must match `encoded_len`.
#![no_main]

use ims_netboot::tftp::{netascii, path, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = wire::parse(data) {
        let out = packet.emit();
        let again = wire::parse(&out).expect("re-parse of an emitted packet failed");
        assert_eq!(again, packet, "parse(emit(p)) != p");
        assert_eq!(again.emit(), out, "emit is not stable");
        if let wire::Packet::Rrq(r) | wire::Packet::Wrq(r) = &packet {
            assert!(r.options.len() <= wire::MAX_OPTIONS);
            assert!(
                r.options
                    .iter()
                    .all(|(n, _)| !n.is_empty() && *n == n.to_ascii_lowercase())
            );
            assert_eq!(r.mode, r.mode.to_ascii_lowercase());
        }
    }
    if let Ok(p) = path::normalize(data, 64) {
        assert!(!p.is_empty() && p.len() <= 64);
        assert!(!p.starts_with('/') && !p.contains('\\'));
        assert!(p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        assert_eq!(path::normalize(p.as_bytes(), 64).as_deref(), Ok(p.as_str()));
    }
    assert_eq!(
        netascii::encode(data).len() as u64,
        netascii::encoded_len(data)
    );
});
