//! `user` and the per-client rate limits of `[dhcp]` and `[tftp]`.

use super::tests::assert_invalid;
use super::*;

#[test]
fn defaults_limit_per_client_and_keep_root() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.user, None);
    assert_eq!(c.dhcp_driver.rate_limit_per_mac, DEFAULT_DHCP_RATE_LIMIT);
    assert_eq!(
        DEFAULT_DHCP_RATE_LIMIT,
        RateLimit {
            per_second: 2,
            burst: 20
        }
    );
    let c = Config::from_toml_str("[tftp]\nroot = \"/srv\"\n").unwrap();
    let tftp = c.tftp.unwrap();
    assert_eq!(tftp.rate_limit_per_ip, DEFAULT_TFTP_RATE_LIMIT);
    assert_eq!(
        DEFAULT_TFTP_RATE_LIMIT,
        RateLimit {
            per_second: 10,
            burst: 50
        }
    );
}

#[test]
fn limits_and_user_are_read() {
    let c = Config::from_toml_str(
        "user = \"nobody\"\n[dhcp]\nrate_limit_per_mac = 5\nrate_limit_burst = 7\n\
         [tftp]\nroot = \"/srv\"\nrate_limit_per_ip = 0\n",
    )
    .unwrap();
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(
        c.dhcp_driver.rate_limit_per_mac,
        RateLimit {
            per_second: 5,
            burst: 7
        }
    );
    let off = c.tftp.unwrap().rate_limit_per_ip;
    assert!(!off.is_enabled());
}

#[test]
fn bad_values_name_the_key() {
    assert_invalid(
        "[dhcp]\nrate_limit_burst = 0\n",
        "dhcp.rate_limit_burst",
        "dhcp.rate_limit_per_mac = 0 to turn the limit off",
    );
    assert_invalid(
        "[tftp]\nroot = \"/srv\"\nrate_limit_per_ip = 3\nrate_limit_burst = 0\n",
        "tftp.rate_limit_burst",
        "is 0 while tftp.rate_limit_per_ip is 3",
    );
    assert_invalid("user = \"\"\n", "user", "is not a user name");
    assert_invalid("user = \"a b\"\n", "user", "is not a user name");
}
