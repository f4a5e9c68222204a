//! Reading request bodies and queries field by field: each field is taken as a JSON value so a
//! bad value becomes an error naming the field (not a serde error), and every invalid field of
//! a request is reported at once. Shared by the machine and cluster routes.

use std::net::{IpAddr, Ipv4Addr};

use ims_proto::MacAddr;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{ApiError, FieldError};
use crate::model::UnknownVariant;
use crate::store::clusters::NameOrId;

/// Deserialises a body field that is present, even as `null`, as `Some` (absent stays `None`
/// through `#[serde(default)]`), so PATCH can tell "clear" from "leave alone".
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Collects the field errors of one body while its fields are read.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// The invalid fields so far.
    pub(crate) errors: Vec<FieldError>,
}

impl Checker {
    /// Records an invalid field.
    pub(crate) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Field `name`: parsed from `given` when present; otherwise `current` (PATCH keeps the
    /// stored value) or `default` (POST/PUT); with neither it is required (`hint` says what to
    /// give). `None` when invalid (the error is recorded).
    pub(crate) fn take<T>(
        &mut self,
        name: &str,
        given: Option<&Value>,
        current: Option<T>,
        default: Option<T>,
        hint: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match given {
            Some(v) => parse(v).map_err(|m| self.error(name, m)).ok(),
            None => {
                let value = current.or(default);
                if value.is_none() {
                    self.error(name, format!("this field is required: {hint}"));
                }
                value
            }
        }
    }

    /// 400 with every recorded error, if any.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// A string of at most `max` characters (trimmed when `trim`), non-empty when `nonempty`.
pub(crate) fn parse_text(
    v: &Value,
    max: usize,
    trim: bool,
    nonempty: bool,
) -> Result<String, String> {
    let Value::String(s) = v else {
        return Err(format!("give a string of at most {max} characters"));
    };
    let s = if trim { s.trim() } else { s.as_str() };
    if nonempty && s.is_empty() {
        return Err(format!("must not be empty; give 1 to {max} characters"));
    }
    if s.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    Ok(s.to_owned())
}

/// An enumeration name (case-insensitive); `expected` lists the accepted names.
pub(crate) fn parse_enum<T: std::str::FromStr<Err = UnknownVariant>>(
    v: &Value,
    expected: &str,
) -> Result<T, String> {
    match v {
        Value::String(s) => s.parse().map_err(|e: UnknownVariant| e.to_string()),
        _ => Err(format!("give one of {expected} as a string")),
    }
}

/// A nullable reference: an id (number or all-digit string) or a name; `null` or `""` is none.
pub(crate) fn parse_ref(v: &Value, what: &str) -> Result<Option<NameOrId>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(id) if id > 0 => Ok(Some(NameOrId::Id(id))),
            _ => Err(format!(
                "{n} is not a {what} id; give a positive id or a name"
            )),
        },
        Value::String(s) if s.chars().count() <= 255 => Ok(NameOrId::parse(s)),
        _ => Err(format!("give a {what} id (number) or name (string)")),
    }
}

/// `id 5` or `name `x`` for messages.
pub(crate) fn describe(r: &NameOrId) -> String {
    match r {
        NameOrId::Id(id) => format!("id {id}"),
        NameOrId::Name(name) => format!("name `{name}`"),
    }
}

/// An integer in `min..=max`.
pub(crate) fn parse_int(v: &Value, min: i64, max: i64) -> Result<i64, String> {
    v.as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("give a whole number from {min} to {max}"))
}

/// A JSON boolean.
pub(crate) fn parse_bool(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "give true or false".to_owned())
}

/// A host's IPv4 address; `null` or `""` is none.
pub(crate) fn parse_ipv4(v: &Value) -> Result<Option<Ipv4Addr>, String> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim(),
        _ => return Err("give an IPv4 address as a string, such as \"10.0.0.5\"".to_owned()),
    };
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() => Err(
            format!("{ip} cannot be a host's address; give a unicast IPv4 address"),
        ),
        Ok(IpAddr::V4(ip)) => Ok(Some(ip)),
        Ok(IpAddr::V6(_)) => Err(format!(
            "`{s}` is an IPv6 address; only IPv4 is supported, such as 10.0.0.5"
        )),
        Err(_) => Err(format!(
            "`{s}` is not an IPv4 address; give four decimal numbers 0-255 such as 10.0.0.5"
        )),
    }
}

/// A MAC address in any spelling [`MacAddr`] accepts, for a network card (unicast, non-zero).
pub(crate) fn parse_mac(v: &Value) -> Result<MacAddr, String> {
    let Value::String(s) = v else {
        return Err("give a MAC address as a string, such as \"52:54:00:12:34:56\"".to_owned());
    };
    let mac: MacAddr = s
        .trim()
        .parse()
        .map_err(|e: ims_proto::ParseMacError| e.to_string())?;
    if mac.is_multicast() || mac.octets() == [0; 6] {
        return Err(format!(
            "{mac} is a group or all-zero address; give the network card's own (unicast) MAC"
        ));
    }
    Ok(mac)
}

/// Whether `s` is an RFC 1123 host name: dot-separated labels of 1–63 letters, digits and
/// `-`, not starting or ending with `-`, at most 253 characters in all.
#[must_use]
pub(crate) fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An RFC 1123 host name (trimmed).
pub(crate) fn parse_hostname(v: &Value) -> Result<String, String> {
    const HINT: &str = "give an RFC 1123 host name such as node-1 or node-1.example.net \
                        (labels of 1-63 letters, digits or '-', not starting or ending with '-')";
    let Value::String(s) = v else {
        return Err(HINT.to_owned());
    };
    let s = s.trim();
    if valid_hostname(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a valid host name; {HINT}"))
    }
}

/// A query value, `None` when empty.
pub(crate) fn query_value(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// An enumeration filter; a bad name is an error on `field`.
pub(crate) fn enum_filter<T: std::str::FromStr<Err = UnknownVariant>>(
    c: &mut Checker,
    field: &str,
    v: Option<&String>,
) -> Option<T> {
    query_value(v).and_then(|s| {
        s.parse()
            .map_err(|e: UnknownVariant| c.error(field, e.to_string()))
            .ok()
    })
}
