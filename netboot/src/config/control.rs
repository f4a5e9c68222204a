//! Validation of `[control]`: where the control plane is, the name its certificate carries, and
//! the outbox bound. Also [`parse_endpoint`], shared with `netbootd enroll --control`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use toml::Spanned;

use super::raw::RawControl;
use super::validate::is_valid_hostname;
use super::{
    ControlConfig, DEFAULT_CONTROL_SERVER_NAME, DEFAULT_MAX_OUTBOX, Invalid, MIN_MAX_OUTBOX,
};

/// A control-plane address: a host name or IP address, and a UDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port (1–65535).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    /// `host:port`, with an IPv6 address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parse `HOST:PORT`: a host name (`control.example.net`), an IPv4 address, or an IPv6 address
/// in brackets (`[fd00::1]:7443`), then a port 1–65535.
///
/// # Errors
/// A message saying what is wrong and showing the expected form.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let text = text.trim();
    let form = "expected HOST:PORT such as \"control.example.net:7443\", \"10.0.0.5:7443\" or \
                \"[fd00::1]:7443\"";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port: {form}"));
    };
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => {
            return Err(format!(
                "{text:?} has no valid port ({port:?} is not 1–65535): {form}"
            ));
        }
        Ok(port) => port,
    };
    let host = if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(format!("{text:?} has an unclosed '[': {form}"));
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "{text:?}: {inner:?} in brackets is not an IPv6 address: {form}"
            ));
        }
        inner.to_owned()
    } else if host.contains(':') {
        return Err(format!(
            "{text:?}: an IPv6 address needs brackets, as in \"[fd00::1]:7443\""
        ));
    } else if host.parse::<IpAddr>().is_ok() || is_valid_hostname(host) {
        host.to_owned()
    } else {
        return Err(format!(
            "{text:?}: {host:?} is not a host name or IP address: {form}"
        ));
    };
    Ok(Endpoint { host, port })
}

fn invalid(key: &str, span: Option<std::ops::Range<usize>>, problem: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_owned(),
        problem: problem.into(),
        span,
    }
}

/// `[control]`.
pub(super) fn control(entry: &Spanned<RawControl>) -> Result<ControlConfig, Invalid> {
    let span = Some(entry.span());
    let raw = entry.get_ref();
    let endpoint = match raw.endpoint.as_deref() {
        None => {
            return Err(invalid(
                "control.endpoint",
                span,
                "is missing: give the control plane's QUIC address, such as \
                 \"control.example.net:7443\" (printed by `netbootd enroll`), or remove \
                 [control] to run standalone",
            ));
        }
        Some(text) => {
            parse_endpoint(text).map_err(|e| invalid("control.endpoint", span.clone(), e))?
        }
    };
    let server_name = match raw.server_name.as_deref().map(str::trim) {
        None => DEFAULT_CONTROL_SERVER_NAME.to_owned(),
        Some(name) if is_valid_hostname(name) || name.parse::<IpAddr>().is_ok() => name.to_owned(),
        Some(name) => {
            return Err(invalid(
                "control.server_name",
                span,
                format!(
                    "{name:?} is not a DNS name or IP address; omit it to use \
                     \"{DEFAULT_CONTROL_SERVER_NAME}\", the name every control-plane \
                     certificate carries"
                ),
            ));
        }
    };
    let max_outbox = match raw.max_outbox {
        None => DEFAULT_MAX_OUTBOX,
        Some(n) if n < MIN_MAX_OUTBOX => {
            return Err(invalid(
                "control.max_outbox",
                span,
                format!(
                    "{n} is too small: keep at least {MIN_MAX_OUTBOX} events (the default is \
                     {DEFAULT_MAX_OUTBOX})"
                ),
            ));
        }
        Some(n) => n,
    };
    Ok(ControlConfig {
        endpoint,
        server_name,
        max_outbox,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    #[test]
    fn endpoints_parse_and_display() {
        let ok = [
            ("control.example.net:7443", "control.example.net", 7443),
            ("10.0.0.5:7443", "10.0.0.5", 7443),
            ("[fd00::1]:7443", "fd00::1", 7443),
            (" localhost:1 ", "localhost", 1),
        ];
        for (text, host, port) in ok {
            let e = parse_endpoint(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((e.host.as_str(), e.port), (host, port), "{text}");
            assert_eq!(parse_endpoint(&e.to_string()).unwrap(), e, "{text}");
        }
        assert_eq!(parse_endpoint("[::1]:9").unwrap().to_string(), "[::1]:9");
        let bad = [
            ("control.example.net", "no port"),
            ("control:0", "1–65535"),
            ("control:70000", "1–65535"),
            ("control:http", "1–65535"),
            ("fd00::1:7443", "needs brackets"),
            ("[fd00::1:7443", "unclosed"),
            ("[not-v6]:7443", "not an IPv6"),
            ("bad host!:7443", "not a host name"),
            (":7443", "not a host name"),
        ];
        for (text, needle) in bad {
            let err = parse_endpoint(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    fn parse(section: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!("metrics_listen = \"off\"\n{section}"))
    }

    #[test]
    fn control_section_defaults_and_values() {
        assert_eq!(parse("").unwrap().control, None);
        let c = parse("[control]\nendpoint = \"ctl.example:7443\"\n")
            .unwrap()
            .control
            .unwrap();
        assert_eq!(c.endpoint.to_string(), "ctl.example:7443");
        assert_eq!(c.server_name, "ims-control");
        assert_eq!(c.max_outbox, DEFAULT_MAX_OUTBOX);
        let c = parse(
            "[control]\nendpoint = \"[fd00::5]:8443\"\nserver_name = \"ctl.site\"\nmax_outbox = 5000\n",
        )
        .unwrap()
        .control
        .unwrap();
        assert_eq!(c.endpoint.host, "fd00::5");
        assert_eq!(c.server_name, "ctl.site");
        assert_eq!(c.max_outbox, 5000);
    }

    #[test]
    fn control_section_errors_name_the_key_and_line() {
        let cases = [
            (
                "[control]\nserver_name = \"x\"\n",
                "control.endpoint",
                "is missing",
            ),
            (
                "[control]\nendpoint = \"ctl\"\n",
                "control.endpoint",
                "no port",
            ),
            (
                "[control]\nendpoint = \"ctl:1\"\nserver_name = \"a b\"\n",
                "control.server_name",
                "not a DNS name",
            ),
            (
                "[control]\nendpoint = \"ctl:1\"\nmax_outbox = 5\n",
                "control.max_outbox",
                "too small",
            ),
        ];
        for (text, key, needle) in cases {
            match parse(text) {
                Err(ConfigError::Invalid {
                    key: k,
                    problem,
                    line,
                    ..
                }) => {
                    assert_eq!(k, key, "{text}");
                    assert!(problem.contains(needle), "{text}: {problem}");
                    assert_eq!(line, Some(2), "{text}");
                }
                other => panic!("{text}: expected an invalid {key}, got {other:?}"),
            }
        }
        // Unknown keys are refused by the parser.
        match parse("[control]\nendpoint = \"ctl:1\"\ntoken = \"x\"\n") {
            Err(ConfigError::Parse { message, .. }) => {
                assert!(message.contains("token"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
