//! [`Ipv4Cidr`]: an IPv4 network in CIDR notation, as carried by subnets and lease events.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: a network address and a prefix length (0–32) with no host bits set.
///
/// Travels as its text form, `10.0.0.0/24`. Ordered by address, then prefix length.
/// Convert to `ipnet::Ipv4Net` with `Ipv4Net::new(c.addr(), c.prefix_len())`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

/// Why a value is not an [`Ipv4Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `A.B.C.D/N`.
    #[error(
        "invalid IPv4 network {0:?}: expected an address and a prefix length such as 10.0.0.0/24"
    )]
    Syntax(String),
    /// The prefix length is above 32.
    #[error("invalid IPv4 network: prefix length {0} is above 32")]
    PrefixTooLong(u8),
    /// Bits below the prefix are set in the address.
    #[error("invalid IPv4 network {given}: host bits are set; did you mean {network}?")]
    HostBits {
        /// What was given.
        given: String,
        /// The network the address belongs to.
        network: String,
    },
}

impl Ipv4Cidr {
    /// The network `addr/prefix_len`.
    ///
    /// # Errors
    /// [`CidrError::PrefixTooLong`] above 32, [`CidrError::HostBits`] when `addr` has bits set
    /// below the prefix (use [`Ipv4Cidr::containing`] to mask them off).
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        let network = Self::containing(addr, prefix_len)?;
        if network.addr != addr {
            return Err(CidrError::HostBits {
                given: format!("{addr}/{prefix_len}"),
                network: network.to_string(),
            });
        }
        Ok(network)
    }

    /// The network of length `prefix_len` that contains `addr` (host bits cleared).
    ///
    /// # Errors
    /// [`CidrError::PrefixTooLong`] above 32.
    pub fn containing(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::PrefixTooLong(prefix_len));
        }
        let addr = Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix_len));
        Ok(Self { addr, prefix_len })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0–32.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix_len))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_bits(self.prefix_len) == u32::from(self.addr)
    }

    fn mask_bits(prefix_len: u8) -> u32 {
        match prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(addr, len)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let c: Ipv4Cidr = "10.1.2.0/24".parse().unwrap();
        assert_eq!(c.addr(), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(c.prefix_len(), 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.to_string(), "10.1.2.0/24");
        assert!(c.contains(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 3, 0)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        let host: Ipv4Cidr = "192.0.2.7/32".parse().unwrap();
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 6)));
    }

    #[test]
    fn rejects_bad_networks_with_clear_errors() {
        let err = "10.1.2.3/24".parse::<Ipv4Cidr>().unwrap_err();
        assert!(
            err.to_string().contains("did you mean 10.1.2.0/24"),
            "{err}"
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::PrefixTooLong(33))
        );
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "x/8",
        ] {
            assert!(
                matches!(bad.parse::<Ipv4Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Ipv4Cidr::containing(Ipv4Addr::new(10, 1, 2, 3), 16)
                .unwrap()
                .to_string(),
            "10.1.0.0/16"
        );
    }
}
