//! Leases: what the store keeps, keyed by IP address.

use std::net::Ipv4Addr;

use ims_proto::MacAddr;
use serde::{Deserialize, Serialize};

/// Wall-clock time in whole seconds since the UNIX epoch.
///
/// Leases outlive the process, so their times are wall-clock; the driver reads the clock once per
/// input and passes it to the core.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// `self + secs`, saturating.
    pub fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Seconds from `self` until `later` (0 if `later` is not after `self`).
    pub fn until(self, later: Self) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// The binding state of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LeaseState {
    /// Bound to `mac` until `ends`.
    Bound,
    /// Released by the client (RELEASE); free, but remembered so the client gets it back.
    Released,
    /// Expired; free, remembered for the same reason.
    Expired,
    /// Declined (DECLINE: someone else uses it); quarantined until `ends`.
    Declined,
}

/// One address and who holds (or last held) it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The address; the store's key.
    pub ip: Ipv4Addr,
    /// Client hardware address.
    pub mac: MacAddr,
    /// Binding state.
    pub state: LeaseState,
    /// When the binding started.
    pub starts: UnixTime,
    /// When the binding (or quarantine) ends.
    pub ends: UnixTime,
    /// Hostname given to the client.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Client identifier (option 61), if the client sent one.
    #[serde(default)]
    pub client_id: Option<Vec<u8>>,
    /// Client machine UUID (option 97), if sent.
    #[serde(default)]
    pub uuid: Option<Vec<u8>>,
    /// Client system architecture (option 93), if sent.
    #[serde(default)]
    pub arch: Option<u16>,
    /// Boot file handed out, if any.
    #[serde(default)]
    pub boot_file: Option<String>,
    /// Next server (TFTP) handed out with the boot file.
    #[serde(default)]
    pub next_server: Option<Ipv4Addr>,
}

impl Lease {
    /// Whether the address is held (bound, or quarantined after a DECLINE) at `now`.
    pub fn is_active(&self, now: UnixTime) -> bool {
        matches!(self.state, LeaseState::Bound | LeaseState::Declined) && now < self.ends
    }
}
