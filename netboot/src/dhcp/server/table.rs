//! The server's in-memory state of addresses: stored leases, in-memory offers, deadlines and the
//! per-subnet pools, kept consistent with each other.
//!
//! Invariants, kept by routing every change through [`Table::put_lease`], [`Table::remove_lease`],
//! [`Table::put_offer`] and [`Table::remove_offer`]:
//! - `by_mac[m] = ip` only if `leases[ip]` exists with `mac == m` and is not `Declined`;
//! - `offer_by_mac[m] = ip` exactly when `offers[ip].mac == m`; a MAC has at most one offer;
//! - `lease_deadlines` holds `(ends, ip)` of every `Bound` or `Declined` lease and nothing else;
//!   `offer_deadlines` holds `(expires, ip)` of every offer;
//! - a pool address is marked held exactly when it has an offer or a `Bound`/`Declined` lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ims_proto::MacAddr;

use crate::dhcp::pool::Pool;
use crate::dhcp::{Lease, LeaseState, UnixTime};

/// An address held for a client between OFFER and REQUEST. Never persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    /// Who it was offered to.
    pub(super) mac: MacAddr,
    /// When the hold lapses.
    pub(super) expires: UnixTime,
}

/// Who holds an address right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// Nobody: free to give (subject to the pool's exclusions).
    Free,
    /// Offered or bound to this MAC.
    Client(MacAddr),
    /// Quarantined after a DECLINE.
    Quarantined,
}

/// Leases, offers, deadlines and pools.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Every stored lease, by address.
    leases: BTreeMap<Ipv4Addr, Lease>,
    /// Each client's current or previous address (latest record that is not `Declined`).
    by_mac: BTreeMap<MacAddr, Ipv4Addr>,
    /// Live offers, by address.
    offers: BTreeMap<Ipv4Addr, Offer>,
    /// Live offers, by client.
    offer_by_mac: BTreeMap<MacAddr, Ipv4Addr>,
    /// Ends of `Bound` and `Declined` leases.
    lease_deadlines: BTreeSet<(UnixTime, Ipv4Addr)>,
    /// Expiry of offers.
    offer_deadlines: BTreeSet<(UnixTime, Ipv4Addr)>,
    /// Dynamic pools, indexed like the configured subnets (`None`: no range).
    pools: Vec<Option<Pool>>,
}

impl Table {
    /// A table over `pools` (one entry per subnet) loaded with `leases`. Of several records for
    /// the same address the one that started last wins (on a tie, the later in `leases`); a
    /// client's "previous address" is likewise its record that started last.
    pub(super) fn new(pools: Vec<Option<Pool>>, mut leases: Vec<Lease>) -> Self {
        let mut table = Self {
            pools,
            ..Self::default()
        };
        // Stable sort: records with equal starts keep their load order.
        leases.sort_by_key(|l| l.starts);
        for lease in leases {
            table.put_lease(lease);
        }
        table
    }

    /// The pool of subnet `index`, if it has a range.
    pub(super) fn pool(&self, index: usize) -> Option<&Pool> {
        self.pools.get(index)?.as_ref()
    }

    /// The pool of subnet `index`, mutable.
    pub(super) fn pool_mut(&mut self, index: usize) -> Option<&mut Pool> {
        self.pools.get_mut(index)?.as_mut()
    }

    /// The stored lease for `ip`.
    pub(super) fn lease(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    /// Every stored lease, by address.
    pub(super) fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Stored leases whose address lies in `[first, last]`.
    pub(super) fn leases_in(
        &self,
        first: Ipv4Addr,
        last: Ipv4Addr,
    ) -> impl Iterator<Item = &Lease> {
        self.leases.range(first..=last).map(|(_, l)| l)
    }

    /// Offers whose address lies in `[first, last]`.
    pub(super) fn offers_in(
        &self,
        first: Ipv4Addr,
        last: Ipv4Addr,
    ) -> impl Iterator<Item = (Ipv4Addr, &Offer)> {
        self.offers.range(first..=last).map(|(ip, o)| (*ip, o))
    }

    /// The client's current or previous address (its latest non-declined record).
    pub(super) fn previous(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.by_mac.get(&mac).copied()
    }

    /// The address currently offered to `mac`.
    pub(super) fn offer_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.offer_by_mac.get(&mac).copied()
    }

    /// The offer on `ip`.
    pub(super) fn offer(&self, ip: Ipv4Addr) -> Option<&Offer> {
        self.offers.get(&ip)
    }

    /// Who holds `ip` (a quarantine outranks an offer).
    pub(super) fn holder(&self, ip: Ipv4Addr) -> Holder {
        match self.leases.get(&ip) {
            Some(l) if l.state == LeaseState::Declined => return Holder::Quarantined,
            Some(l) if l.state == LeaseState::Bound => return Holder::Client(l.mac),
            _ => {}
        }
        match self.offers.get(&ip) {
            Some(o) => Holder::Client(o.mac),
            None => Holder::Free,
        }
    }

    /// Whether `ip` is `mac`'s or nobody's.
    pub(super) fn free_for(&self, ip: Ipv4Addr, mac: MacAddr) -> bool {
        match self.holder(ip) {
            Holder::Free => true,
            Holder::Client(m) => m == mac,
            Holder::Quarantined => false,
        }
    }

    /// Store `lease` (replacing the record for its address) and update indexes, deadlines and the
    /// pool mark.
    pub(super) fn put_lease(&mut self, lease: Lease) {
        let ip = lease.ip;
        if let Some(old) = self.leases.remove(&ip) {
            self.forget(&old);
        }
        if lease.state != LeaseState::Declined {
            self.by_mac.insert(lease.mac, ip);
        }
        if matches!(lease.state, LeaseState::Bound | LeaseState::Declined) {
            self.lease_deadlines.insert((lease.ends, ip));
        }
        self.leases.insert(ip, lease);
        self.refresh(ip);
    }

    /// Delete the record for `ip`.
    pub(super) fn remove_lease(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let old = self.leases.remove(&ip)?;
        self.forget(&old);
        self.refresh(ip);
        Some(old)
    }

    /// Drop the indexes pointing at `old` (already taken out of `leases`).
    fn forget(&mut self, old: &Lease) {
        self.lease_deadlines.remove(&(old.ends, old.ip));
        if self.by_mac.get(&old.mac) == Some(&old.ip) {
            self.by_mac.remove(&old.mac);
        }
    }

    /// Hold `ip` for `mac` until `expires`, replacing `mac`'s other offer and anyone else's offer
    /// on `ip`.
    pub(super) fn put_offer(&mut self, ip: Ipv4Addr, mac: MacAddr, expires: UnixTime) {
        if let Some(prev) = self.offer_by_mac.get(&mac).copied() {
            self.remove_offer(prev);
        }
        self.remove_offer(ip);
        self.offers.insert(ip, Offer { mac, expires });
        self.offer_by_mac.insert(mac, ip);
        self.offer_deadlines.insert((expires, ip));
        self.refresh(ip);
    }

    /// Drop the offer on `ip`, if any.
    pub(super) fn remove_offer(&mut self, ip: Ipv4Addr) -> Option<Offer> {
        let offer = self.offers.remove(&ip)?;
        self.offer_deadlines.remove(&(offer.expires, ip));
        if self.offer_by_mac.get(&offer.mac) == Some(&ip) {
            self.offer_by_mac.remove(&offer.mac);
        }
        self.refresh(ip);
        Some(offer)
    }

    /// Drop `mac`'s offer, if any.
    pub(super) fn remove_offer_of(&mut self, mac: MacAddr) -> Option<Ipv4Addr> {
        let ip = self.offer_by_mac.get(&mac).copied()?;
        self.remove_offer(ip);
        Some(ip)
    }

    /// Re-derive the pool mark of `ip` from the offers and leases.
    fn refresh(&mut self, ip: Ipv4Addr) {
        let held = self.offers.contains_key(&ip)
            || self
                .leases
                .get(&ip)
                .is_some_and(|l| matches!(l.state, LeaseState::Bound | LeaseState::Declined));
        for pool in self.pools.iter_mut().flatten() {
            if pool.in_range(ip) {
                pool.set_held(ip, held);
            }
        }
    }

    /// The earliest offer expiry.
    pub(super) fn next_offer_deadline(&self) -> Option<UnixTime> {
        self.offer_deadlines.first().map(|&(t, _)| t)
    }

    /// The earliest lease or quarantine end.
    pub(super) fn next_lease_deadline(&self) -> Option<UnixTime> {
        self.lease_deadlines.first().map(|&(t, _)| t)
    }

    /// Remove and return the first offer due at `now` (expiry `<= now`).
    pub(super) fn pop_due_offer(&mut self, now: UnixTime) -> Option<(Ipv4Addr, Offer)> {
        loop {
            let &(t, ip) = self.offer_deadlines.first()?;
            if t > now {
                return None;
            }
            self.offer_deadlines.pop_first();
            if let Some(offer) = self.remove_offer(ip) {
                return Some((ip, offer));
            }
        }
    }

    /// The first `Bound`/`Declined` lease whose end is due at `now` (`ends <= now`); its deadline
    /// is taken off the schedule, so the caller must replace or remove the lease.
    pub(super) fn pop_due_lease(&mut self, now: UnixTime) -> Option<Lease> {
        loop {
            let &(t, ip) = self.lease_deadlines.first()?;
            if t > now {
                return None;
            }
            self.lease_deadlines.pop_first();
            match self.leases.get(&ip) {
                Some(l)
                    if l.ends == t
                        && matches!(l.state, LeaseState::Bound | LeaseState::Declined) =>
                {
                    return Some(l.clone());
                }
                _ => {}
            }
        }
    }
}
