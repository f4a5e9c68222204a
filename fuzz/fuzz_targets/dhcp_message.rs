//! `Message::parse` on arbitrary bytes: never panics, and whatever it accepts survives
//! `emit` + `parse` unchanged.
#![no_main]

use ims_netboot::dhcp::wire::{Error, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    message.emit(&mut out);
    assert_eq!(
        out.len(),
        message.buffer_len(),
        "buffer_len disagrees with emit"
    );
    assert!(out.len() >= 300, "emit must pad to the BOOTP minimum");
    match Message::parse(&out) {
        Ok(again) => assert_eq!(again, message, "parse(emit(m)) != m"),
        // Resolving overload moves up to 192 bytes of options into the options field, so a
        // message near the limit may grow past it; nothing else may fail.
        Err(e) => assert!(
            e == Error::Oversized && out.len() > Message::MAX_LEN,
            "re-parse failed with {e:?} on {} bytes",
            out.len()
        ),
    }
});
