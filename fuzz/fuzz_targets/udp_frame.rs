//! `UdpFrame::parse` on arbitrary bytes: never panics, and whatever it accepts survives
//! `emit` + `parse` unchanged.
#![no_main]

use ims_netboot::dhcp::frame::UdpFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = UdpFrame::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    frame.emit(&mut out);
    assert_eq!(
        out.len(),
        frame.buffer_len(),
        "buffer_len disagrees with emit"
    );
    assert_eq!(UdpFrame::parse(&out), Ok(frame), "parse(emit(f)) != f");
});
