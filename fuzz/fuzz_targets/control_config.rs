//! ims-control's configuration file (`config::parse_file`) and the validation `serve` runs on
//! it (`ConfigSources::serve`, with the store, log format and uplink settings), on arbitrary
//! text: never panics, and every error renders as a message naming where the bad value came
//! from.
#![no_main]

use std::path::{Path, PathBuf};

use ims_control::config::{ConfigSources, RawConfig, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/ims-control.toml");
    let raw = match parse_file(text, path) {
        Ok(raw) => raw,
        Err(e) => {
            assert!(e.to_string().contains("/etc/ims-control.toml"), "{e}");
            return;
        }
    };
    let sources = ConfigSources::new(Some((PathBuf::from(path), raw)), RawConfig::default());
    let _ = sources.store().map_err(|e| assert!(!e.to_string().is_empty()));
    let _ = sources.log_format().map_err(|e| assert!(!e.to_string().is_empty()));
    let _ = sources.data_dir();
    if let Err(e) = sources.serve() {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = sources.uplink() {
        assert!(!e.to_string().is_empty());
    }
});
