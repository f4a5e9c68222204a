//! The sans-IO DHCPv4 server.
//!
//! [`Server`] owns the lease table (loaded once from the store, then authoritative), the
//! in-memory offers and the per-subnet [`Pool`]s. Inputs come in through
//! [`Server::handle_frame`] (raw Ethernet frames from a configured interface),
//! [`Server::handle_datagram`] (UDP payloads from relay agents) and [`Server::handle_timeout`];
//! side effects come out of [`Server::poll_command`] in the order they must run, a
//! [`Command::Persist`] always before the [`Command::Send`] of the ACK that depends on it.
//!
//! Every `handle_*` call first retires what is due at `now` (offers lapse, bound leases become
//! `Expired`, quarantines end), so decisions always see the table as of `now`.
//!
//! # Who gets an answer
//!
//! Only machines registered in the configuration, each with its reserved address (which must lie
//! in the subnet the request came from) or a dynamic one from the subnet's range. Unknown MACs are
//! dropped and logged at a bounded rate, unless the subnet is in discovery mode
//! (`allow_unknown`): then they get a dynamic address, no boot file, and a
//! [`Command::Discovered`] record.
//!
//! # Allocation order for dynamic addresses
//!
//! 1. the address currently offered to the client; 2. its current or previous lease (same MAC,
//!    `Bound`, `Released` or `Expired`); 3. the address it asks for (option 50); 4. the next free
//!    address after a rotating cursor. Each only if dynamic (in the range, not excluded, not
//!    reserved) and held by nobody else.
//!
//! # Rate limit
//!
//! With [`Server::set_rate_limit`], each client MAC gets a token bucket (on the virtual time of
//! the `handle_*` calls); messages beyond it are dropped unanswered and counted
//! ([`Stats::rate_limited`]).
//!
//! No input makes any method panic.

mod handlers;
mod limit;
mod reply;
mod table;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;
use ipnet::Ipv4Net;

use self::limit::LogLimiter;
use self::table::Table;
use super::frame::UdpFrame;
use super::pool::Pool;
use super::stats::IngressLabel;
use super::wire::{Message, MessageType};
use super::{
    Command, DiscoveredMachine, DropReason, Ingress, InterfaceId, Lease, LeaseState, Stats,
    UnixTime,
};
use crate::config::DhcpConfig;
use crate::ratelimit::{RateLimit, RateLimiter};

/// DHCP server port.
const SERVER_PORT: u16 = 67;

/// Most discovered machines remembered in memory (for `first_seen`); beyond that, records still
/// go out but start afresh.
const MAX_DISCOVERED: usize = 16_384;

/// The DHCPv4 server state machine.
#[derive(Debug)]
pub struct Server {
    /// Validated configuration.
    config: DhcpConfig,
    /// Addresses, offers, pools.
    table: Table,
    /// Side effects not yet polled.
    commands: VecDeque<Command>,
    /// Counters.
    stats: Stats,
    /// Budget for "unknown MAC" log lines.
    unknown_log: LogLimiter,
    /// Warnings already logged once (misconfigurations met at run time).
    warned: BTreeSet<String>,
    /// Machines seen in discovery mode, for `first_seen`.
    discovered: BTreeMap<MacAddr, DiscoveredMachine>,
    /// Messages per client MAC ([`Server::set_rate_limit`]; off by default).
    mac_limit: RateLimiter<MacAddr>,
}

/// Dynamic address usage of one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// Dynamic addresses in total: the range minus exclusions and reservations (and the subnet's
    /// network, broadcast, router and our own addresses).
    pub size: u64,
    /// Dynamic addresses in use: bound, offered or quarantined after a DECLINE.
    pub used: u64,
}

/// One request being decided: the parsed message and where it came from.
#[derive(Debug)]
struct Request {
    /// The message.
    msg: Message,
    /// Its type (option 53).
    message_type: MessageType,
    /// Client hardware address.
    mac: MacAddr,
    /// The interface it arrived on (direct), or `None` (relayed).
    link: Option<InterfaceId>,
    /// Our identifier towards this client: the interface address, or the relay's target address.
    server_id: Ipv4Addr,
    /// Index of the subnet serving it.
    subnet: usize,
}

impl Server {
    /// Build a server from its configuration and the leases loaded from the store.
    ///
    /// Leases may be in any state and order; of several records for one address the one that
    /// started last wins. Records already past their end are retired by the first `handle_*` call
    /// ([`Server::poll_timeout`] reports them as due).
    pub fn new(config: DhcpConfig, leases: Vec<Lease>, now: UnixTime) -> Self {
        let _ = now;
        let mut blocked: Vec<Ipv4Addr> = config.machines.values().filter_map(|m| m.ip).collect();
        blocked.extend(config.interfaces.iter().map(|i| i.address));
        let pools = config
            .subnets
            .iter()
            .map(|s| {
                let (first, last) = s.range?;
                let mut own = vec![];
                own.extend(s.router);
                own.extend(s.next_server);
                if s.cidr.prefix_len() < 31 {
                    own.push(s.cidr.network());
                    own.push(s.cidr.broadcast());
                }
                Some(Pool::new(
                    (first, last),
                    &s.exclude,
                    blocked.iter().copied().chain(own),
                ))
            })
            .collect();
        let table = Table::new(pools, leases);
        Self {
            unknown_log: LogLimiter::new(config.unknown_log_per_minute),
            config,
            table,
            commands: VecDeque::new(),
            stats: Stats::default(),
            warned: BTreeSet::new(),
            discovered: BTreeMap::new(),
            mac_limit: RateLimiter::new(RateLimit::OFF),
        }
    }

    /// Limit the messages each client MAC may send (token bucket on the `now` of the
    /// `handle_*` calls); a message over the limit gets no answer and is counted in
    /// [`Stats::rate_limited`]. Off until set; kept across [`Server::replace_config`].
    pub fn set_rate_limit(&mut self, limit: RateLimit) {
        self.mac_limit = RateLimiter::new(limit);
    }

    /// Handle a raw Ethernet frame received on configured interface `interface`.
    ///
    /// Accepts UDP to port 67 addressed to 255.255.255.255 or the interface's address, carrying a
    /// DHCP message from a client on the link (`giaddr` zero). Drain [`Server::poll_command`]
    /// afterwards.
    pub fn handle_frame(&mut self, now: UnixTime, interface: InterfaceId, frame: &[u8]) {
        self.expire(now);
        let Some(address) = self.config.interfaces.get(interface.0).map(|i| i.address) else {
            tracing::debug!(
                ?interface,
                "frame from an interface not in the configuration"
            );
            self.stats.drop_packet(DropReason::NotForUs);
            return;
        };
        let udp = match UdpFrame::parse(frame) {
            Ok(udp) => udp,
            Err(e) => {
                tracing::trace!(error = %e, "dropping malformed frame");
                self.stats.drop_packet(DropReason::Malformed);
                return;
            }
        };
        if udp.dst_port != SERVER_PORT
            || (udp.dst_ip != Ipv4Addr::BROADCAST && udp.dst_ip != address)
        {
            self.stats.drop_packet(DropReason::NotForUs);
            return;
        }
        let Some(msg) = self.parse(udp.payload, Ingress::Interface(interface)) else {
            return;
        };
        if msg.giaddr != Ipv4Addr::UNSPECIFIED {
            // Relayed traffic is answered through the relay socket.
            self.stats.drop_packet(DropReason::WrongPath);
            return;
        }
        if msg.ciaddr != Ipv4Addr::UNSPECIFIED && !self.on_link(msg.ciaddr) {
            // A client behind a router renewing by unicast: the relay socket answers it (routed
            // back to `ciaddr`); answering here would judge it against this link's subnet.
            self.stats.drop_packet(DropReason::WrongPath);
            return;
        }
        self.dispatch(now, msg, Some(interface), address);
    }

    /// Handle a UDP payload received on the relay socket (port 67) from relay agent `peer`,
    /// sent to our address `local` (used as the server identifier). Served here: relayed messages
    /// (`giaddr` set), and unicast renewals from clients behind a router (`giaddr` zero, `ciaddr`
    /// outside every directly served link), answered at `ciaddr`:68. Drain
    /// [`Server::poll_command`] afterwards.
    pub fn handle_datagram(
        &mut self,
        now: UnixTime,
        local: Ipv4Addr,
        peer: SocketAddrV4,
        payload: &[u8],
    ) {
        self.expire(now);
        let Some(msg) = self.parse(payload, Ingress::Relay { local, peer }) else {
            return;
        };
        if msg.giaddr == Ipv4Addr::UNSPECIFIED
            && (msg.ciaddr == Ipv4Addr::UNSPECIFIED || self.on_link(msg.ciaddr))
        {
            // A client on one of our links (the socket also sees its unicast renewals): the raw
            // socket answers it. Expected duplication, so not counted as a drop.
            return;
        }
        self.dispatch(now, msg, None, local);
    }

    /// Retire what is due at `now`: lapsed offers are dropped, bound leases past their end become
    /// `Expired` (persisted), quarantines that ended are removed. Drain
    /// [`Server::poll_command`] afterwards.
    pub fn handle_timeout(&mut self, now: UnixTime) {
        self.expire(now);
    }

    /// The next side effect to perform, in order. Drain it after every `handle_*` call; run each
    /// `Persist`/`Remove` durably before any `Send` that follows it.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Server::handle_timeout`] should next be called: the earliest offer expiry, lease end
    /// or quarantine end (possibly already past). `None` when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        match (
            self.table.next_offer_deadline(),
            self.table.next_lease_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of leases bound at `now`.
    pub fn active_leases(&self, now: UnixTime) -> usize {
        self.table
            .leases()
            .filter(|l| l.state == LeaseState::Bound && l.is_active(now))
            .count()
    }

    /// Dynamic pool usage at `now`, one entry per subnet with a range, in configuration order.
    pub fn pool_usage(&self, now: UnixTime) -> Vec<PoolUsage> {
        self.config
            .subnets
            .iter()
            .enumerate()
            .filter_map(|(i, subnet)| {
                let pool = self.table.pool(i)?;
                let (first, last) = (pool.first(), pool.last());
                let mut in_use: BTreeSet<Ipv4Addr> = self
                    .table
                    .leases_in(first, last)
                    .filter(|l| l.is_active(now) && pool.is_dynamic(l.ip))
                    .map(|l| l.ip)
                    .collect();
                in_use.extend(
                    self.table
                        .offers_in(first, last)
                        .filter(|(ip, o)| now < o.expires && pool.is_dynamic(*ip))
                        .map(|(ip, _)| ip),
                );
                Some(PoolUsage {
                    subnet: subnet.cidr,
                    size: pool.size(),
                    used: in_use.len() as u64,
                })
            })
            .collect()
    }

    /// Every lease in the table (any state), by address.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.table.leases()
    }

    /// Serve `config` from now on: machines, boot profiles and subnets changed at run time (a
    /// snapshot from the control plane). The lease table, counters and discovered machines
    /// are kept; pools are rebuilt around the new reservations; offers not yet requested are
    /// dropped (their clients' next DISCOVER or REQUEST is judged by the new configuration).
    /// Interfaces are fixed at start (each has a socket): `config.interfaces` is ignored and
    /// the current ones are kept.
    pub fn replace_config(&mut self, mut config: DhcpConfig, now: UnixTime) {
        config.interfaces = self.config.interfaces.clone();
        let leases = self.table.leases().cloned().collect();
        let fresh = Self::new(config, leases, now);
        self.config = fresh.config;
        self.table = fresh.table;
        self.unknown_log = fresh.unknown_log;
        self.warned.clear();
    }

    /// The configuration being served.
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The configured name of interface `id`.
    pub fn interface_name(&self, id: InterfaceId) -> Option<&str> {
        self.config.interfaces.get(id.0).map(|i| i.name.as_str())
    }

    /// Decode a DHCP message and count it; `None` (counted as a drop) when it is malformed or not
    /// something a server answers.
    fn parse(&mut self, payload: &[u8], ingress: Ingress) -> Option<Message> {
        let msg = match Message::parse(payload) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::trace!(error = %e, "dropping malformed DHCP message");
                self.stats.drop_packet(DropReason::Malformed);
                return None;
            }
        };
        if let Some(t) = msg.message_type() {
            let label = match ingress {
                Ingress::Interface(id) => {
                    IngressLabel::Interface(self.interface_name(id).unwrap_or_default().to_owned())
                }
                Ingress::Relay { .. } => IngressLabel::Relay,
            };
            self.stats.count_received(label, t);
        }
        if msg.op != 1 || msg.client_mac().is_none_or(|m| m.is_multicast()) {
            self.stats.drop_packet(DropReason::WrongOp);
            return None;
        }
        if msg.message_type().is_none() {
            self.stats.drop_packet(DropReason::Unsupported);
            return None;
        }
        Some(msg)
    }

    /// Select the subnet and hand the request to its handler.
    fn dispatch(
        &mut self,
        now: UnixTime,
        msg: Message,
        link: Option<InterfaceId>,
        server_id: Ipv4Addr,
    ) {
        let (Some(message_type), Some(mac)) = (msg.message_type(), msg.client_mac()) else {
            self.stats.drop_packet(DropReason::WrongOp);
            return;
        };
        if !self.mac_limit.allow(&mac, now.0.saturating_mul(1000)) {
            self.stats.rate_limited = self.stats.rate_limited.saturating_add(1);
            tracing::trace!(%mac, "DHCP message over this MAC's rate limit dropped");
            return;
        }
        // Direct: the subnet of the interface's address; relayed: the subnet of giaddr; a routed
        // unicast renewal: the subnet of ciaddr.
        let anchor = if link.is_some() {
            server_id
        } else if msg.giaddr != Ipv4Addr::UNSPECIFIED {
            msg.giaddr
        } else {
            msg.ciaddr
        };
        let Some(subnet) = self
            .config
            .subnets
            .iter()
            .position(|s| s.cidr.contains(&anchor))
        else {
            tracing::debug!(%mac, %anchor, "no subnet configured for this link or relay");
            self.stats.drop_packet(DropReason::NoSubnet);
            return;
        };
        let req = Request {
            msg,
            message_type,
            mac,
            link,
            server_id,
            subnet,
        };
        let outcome = match message_type {
            MessageType::Discover => self.discover(now, &req),
            MessageType::Request => self.request(now, &req),
            MessageType::Decline => self.decline(now, &req),
            MessageType::Release => self.release(now, &req),
            MessageType::Inform => self.inform(now, &req),
            MessageType::Offer | MessageType::Ack | MessageType::Nak | MessageType::Unknown(_) => {
                Err(DropReason::Unsupported)
            }
        };
        if let Err(reason) = outcome {
            tracing::debug!(%mac, ?message_type, reason = reason.as_str(), "no reply");
            self.stats.drop_packet(reason);
        }
    }

    /// Retire offers, leases and quarantines due at `now`.
    fn expire(&mut self, now: UnixTime) {
        while let Some((ip, offer)) = self.table.pop_due_offer(now) {
            tracing::trace!(%ip, mac = %offer.mac, "offer lapsed");
        }
        while let Some(lease) = self.table.pop_due_lease(now) {
            match lease.state {
                LeaseState::Declined => {
                    tracing::info!(ip = %lease.ip, "quarantine over; address back in the pool");
                    self.table.remove_lease(lease.ip);
                    self.commands.push_back(Command::Remove(lease.ip));
                }
                _ => {
                    tracing::info!(ip = %lease.ip, mac = %lease.mac, "lease expired");
                    let expired = Lease {
                        state: LeaseState::Expired,
                        ..lease
                    };
                    self.table.put_lease(expired.clone());
                    self.commands.push_back(Command::Persist(expired));
                    self.stats.expirations = self.stats.expirations.saturating_add(1);
                }
            }
        }
    }

    /// Whether `ip` lies in the subnet of one of our directly served interfaces.
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.config.interfaces.iter().any(|i| {
            self.config
                .subnets
                .iter()
                .any(|s| s.cidr.contains(&i.address) && s.cidr.contains(&ip))
        })
    }

    /// Log a warning once per distinct `key`.
    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.warned.insert(key) {
            tracing::warn!("{}", message());
        }
    }
}

#[cfg(test)]
mod ratelimit_tests;
#[cfg(test)]
mod replace_tests;
