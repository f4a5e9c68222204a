//! netbootd's configuration loader (`Config::from_toml_str`: TOML parsing, then validation of
//! every section) on arbitrary text: never panics; an error renders as one message naming the
//! file; an accepted configuration is internally consistent (every subnet's range lies inside
//! its network, every reserved machine address inside some subnet).
#![no_main]

use ims_netboot::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "empty error message");
            if let ConfigError::Invalid { key, .. } = &e {
                assert!(!key.is_empty(), "validation error without a key: {message}");
            }
        }
        Ok(config) => {
            for subnet in &config.dhcp.subnets {
                if let Some((first, last)) = subnet.range {
                    assert!(first <= last, "range reversed in {}", subnet.cidr);
                    assert!(
                        subnet.cidr.contains(&first) && subnet.cidr.contains(&last),
                        "range outside {}",
                        subnet.cidr
                    );
                }
                assert!(subnet.lease_time >= 60, "lease_time under 60 s accepted");
            }
            for machine in config.dhcp.machines.values() {
                if let Some(ip) = machine.ip {
                    assert!(
                        config.dhcp.subnets.iter().any(|s| s.cidr.contains(&ip)),
                        "machine {} reserved {ip} outside every subnet",
                        machine.mac
                    );
                }
            }
            // Parsing is deterministic.
            match Config::from_toml_str(text) {
                Ok(again) => assert_eq!(again, config, "second parse differs"),
                Err(e) => panic!("second parse failed: {e}"),
            }
        }
    }
});
