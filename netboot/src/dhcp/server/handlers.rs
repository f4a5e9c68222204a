//! One handler per message type (RFC 2131 §4.3), plus client classification, address choice and
//! binding.

use std::net::Ipv4Addr;

use super::table::Holder;
use super::{MAX_DISCOVERED, Request, Server, reply};
use crate::config::{BootProfile, Machine};
use crate::dhcp::boot::{self, BootDecision, Transport};
use crate::dhcp::wire::{Message, MessageType};
use crate::dhcp::{Command, DiscoveredMachine, DropReason, Lease, LeaseState, Reply, UnixTime};

/// Who is asking.
#[derive(Debug, Clone)]
enum Client {
    /// A registered machine.
    Registered(Machine),
    /// An unknown MAC in a discovery-mode subnet.
    Unknown,
}

impl Client {
    fn machine(&self) -> Option<&Machine> {
        match self {
            Self::Registered(m) => Some(m),
            Self::Unknown => None,
        }
    }
}

/// Where a chosen address came from (for logs and the pool cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The machine's reservation.
    Reserved,
    /// The client's live offer.
    Offered,
    /// The client's current or previous lease.
    Previous,
    /// Option 50.
    Requested,
    /// The pool's cursor.
    Cursor,
}

/// Longest client-supplied hostname recorded in a lease.
const MAX_HOSTNAME: usize = 255;

impl Server {
    /// DHCPDISCOVER → DHCPOFFER, holding the address for `offer_timeout` seconds.
    pub(super) fn discover(&mut self, now: UnixTime, req: &Request) -> Result<(), DropReason> {
        let client = self.client(now, req)?;
        let (ip, source) = self.address_for(req, &client, req.msg.options.requested_ip())?;
        self.table
            .put_offer(ip, req.mac, now.plus(self.config.offer_timeout));
        if source == Source::Cursor {
            if let Some(pool) = self.table.pool_mut(req.subnet) {
                pool.advance_past(ip);
            }
        }
        tracing::debug!(mac = %req.mac, %ip, ?source, "offering");
        let decision = self.boot_decision(req, &client);
        let mut offer = reply::skeleton(&req.msg, MessageType::Offer, req.server_id);
        self.fill(&mut offer, req, &client, ip, &decision);
        if matches!(client, Client::Unknown) && !self.discovered.contains_key(&req.mac) {
            self.discovered_machine(now, req, ip);
        }
        self.send(req, offer, MessageType::Offer);
        Ok(())
    }

    /// DHCPREQUEST in its four forms (RFC 2131 §4.3.2).
    pub(super) fn request(&mut self, now: UnixTime, req: &Request) -> Result<(), DropReason> {
        let opts = &req.msg.options;
        let requested = opts.requested_ip();
        let ciaddr = req.msg.ciaddr;
        if let Some(server_id) = opts.server_id() {
            // SELECTING: the client chose a server.
            if server_id != req.server_id {
                if let Some(ip) = self.table.remove_offer_of(req.mac) {
                    tracing::debug!(mac = %req.mac, %ip, "client chose another server");
                }
                return Err(DropReason::ForeignServerId);
            }
            let client = self.client(now, req)?;
            let Some(requested) = requested.or(Some(ciaddr).filter(|c| !c.is_unspecified())) else {
                return self.nak(req, "no requested address (option 50)");
            };
            return match self.address_for(req, &client, Some(requested)) {
                Ok((ip, _)) if ip == requested => self.bind(now, req, &client, ip),
                Ok(_) | Err(DropReason::PoolExhausted | DropReason::Quarantined) => {
                    self.nak(req, "requested address not available")
                }
                Err(e) => Err(e),
            };
        }
        let cidr = self.config.subnets[req.subnet].cidr;
        if let (Some(requested), true) = (requested, ciaddr.is_unspecified()) {
            // INIT-REBOOT: the client verifies a remembered address.
            let client = self.client(now, req)?;
            if !cidr.contains(&requested) {
                return self.nak(req, "requested address is not on this network");
            }
            return match self.address_for(req, &client, Some(requested)) {
                Ok((ip, _)) if ip == requested => self.bind(now, req, &client, ip),
                Ok(_) | Err(DropReason::PoolExhausted | DropReason::Quarantined) => {
                    self.nak(req, "requested address is not yours")
                }
                Err(e) => Err(e),
            };
        }
        if ciaddr.is_unspecified() {
            // Neither 54, 50 nor ciaddr: not a valid REQUEST.
            return Err(DropReason::NoLease);
        }
        // RENEWING (unicast) or REBINDING (broadcast): extend the binding on ciaddr.
        let client = self.client(now, req)?;
        match self.address_for(req, &client, Some(ciaddr)) {
            Ok((ip, _)) if ip == ciaddr => self.bind(now, req, &client, ip),
            Err(DropReason::NoSubnet) => Err(DropReason::NoSubnet),
            _ if self.config.subnets.iter().any(|s| s.cidr.contains(&ciaddr)) => {
                self.nak(req, "address is not bound to this client")
            }
            _ => Err(DropReason::NoLease),
        }
    }

    /// DHCPDECLINE: quarantine the address the client found in use.
    pub(super) fn decline(&mut self, now: UnixTime, req: &Request) -> Result<(), DropReason> {
        let opts = &req.msg.options;
        if opts.server_id().is_some_and(|id| id != req.server_id) {
            return Err(DropReason::ForeignServerId);
        }
        let Some(ip) = opts.requested_ip() else {
            return Err(DropReason::NoLease);
        };
        // Only the client the address was offered or bound to may decline it.
        let offered = self.table.offer(ip).is_some_and(|o| o.mac == req.mac);
        let bound = self
            .table
            .lease(ip)
            .is_some_and(|l| l.mac == req.mac && l.state == LeaseState::Bound);
        if !offered && !bound {
            return Err(DropReason::NoLease);
        }
        self.table.remove_offer(ip);
        let lease = Lease {
            ip,
            mac: req.mac,
            state: LeaseState::Declined,
            starts: now,
            ends: now.plus(self.config.decline_quarantine),
            hostname: None,
            client_id: opts.client_id().map(<[u8]>::to_vec),
            uuid: None,
            arch: None,
            boot_file: None,
            next_server: None,
        };
        tracing::warn!(
            %ip, mac = %req.mac,
            "client declined the address (in use by another host?); quarantined for {} s",
            self.config.decline_quarantine
        );
        self.table.put_lease(lease.clone());
        self.commands.push_back(Command::Persist(lease));
        self.stats.declines = self.stats.declines.saturating_add(1);
        Ok(())
    }

    /// DHCPRELEASE: the client gives its address back.
    pub(super) fn release(&mut self, now: UnixTime, req: &Request) -> Result<(), DropReason> {
        if req
            .msg
            .options
            .server_id()
            .is_some_and(|id| id != req.server_id)
        {
            return Err(DropReason::ForeignServerId);
        }
        let ip = req.msg.ciaddr;
        let Some(lease) = self
            .table
            .lease(ip)
            .filter(|l| l.mac == req.mac && l.state == LeaseState::Bound)
            .cloned()
        else {
            return Err(DropReason::NoLease);
        };
        let released = Lease {
            state: LeaseState::Released,
            ends: now,
            ..lease
        };
        tracing::debug!(%ip, mac = %req.mac, "released");
        self.table.remove_offer_of(req.mac);
        self.table.put_lease(released.clone());
        self.commands.push_back(Command::Persist(released));
        Ok(())
    }

    /// DHCPINFORM: configuration only, for a client that has its address already.
    pub(super) fn inform(&mut self, now: UnixTime, req: &Request) -> Result<(), DropReason> {
        let client = self.client(now, req)?;
        let subnet = &self.config.subnets[req.subnet];
        let mut ack = reply::skeleton(&req.msg, MessageType::Ack, req.server_id);
        ack.ciaddr = req.msg.ciaddr;
        let hostname = client.machine().map(|m| m.hostname.as_str());
        reply::set_config_options(&mut ack.options, &req.msg.options, subnet, hostname);
        self.send(req, ack, MessageType::Ack);
        Ok(())
    }

    /// Bind `ip` to the client: Persist the lease, then send the ACK.
    fn bind(
        &mut self,
        now: UnixTime,
        req: &Request,
        client: &Client,
        ip: Ipv4Addr,
    ) -> Result<(), DropReason> {
        let lease_time = self.config.subnets[req.subnet].lease_time;
        self.table.remove_offer_of(req.mac);
        self.table.remove_offer(ip);
        // One binding per client: a binding elsewhere is released.
        if let Some(prev) = self.table.previous(req.mac).filter(|p| *p != ip) {
            if let Some(old) = self
                .table
                .lease(prev)
                .filter(|l| l.state == LeaseState::Bound && l.mac == req.mac)
                .cloned()
            {
                let released = Lease {
                    state: LeaseState::Released,
                    ends: now,
                    ..old
                };
                self.table.put_lease(released.clone());
                self.commands.push_back(Command::Persist(released));
            }
        }
        let starts = match self.table.lease(ip) {
            Some(l) if l.mac == req.mac && l.state == LeaseState::Bound => l.starts,
            _ => now,
        };
        let decision = self.boot_decision(req, client);
        let mut ack = reply::skeleton(&req.msg, MessageType::Ack, req.server_id);
        ack.ciaddr = req.msg.ciaddr;
        self.fill(&mut ack, req, client, ip, &decision);
        let opts = &req.msg.options;
        let hostname = match client {
            Client::Registered(m) => Some(m.hostname.clone()).filter(|h| !h.is_empty()),
            Client::Unknown => opts
                .hostname()
                .filter(|h| h.len() <= MAX_HOSTNAME)
                .map(str::to_owned),
        };
        let boot_file = decision.boot_file.as_ref().map(|(f, _)| f.clone());
        let next_server = boot_file.as_ref().map(|_| ack.siaddr);
        let lease = Lease {
            ip,
            mac: req.mac,
            state: LeaseState::Bound,
            starts,
            ends: now.plus(u64::from(lease_time)),
            hostname,
            client_id: opts.client_id().map(<[u8]>::to_vec),
            uuid: opts.client_uuid().map(<[u8]>::to_vec),
            arch: decision.arch,
            boot_file,
            next_server,
        };
        tracing::info!(%ip, mac = %req.mac, ends = lease.ends.0, "bound");
        self.table.put_lease(lease.clone());
        self.commands.push_back(Command::Persist(lease));
        if matches!(client, Client::Unknown) {
            self.discovered_machine(now, req, ip);
        }
        self.send(req, ack, MessageType::Ack);
        Ok(())
    }

    /// Queue a NAK.
    fn nak(&mut self, req: &Request, text: &str) -> Result<(), DropReason> {
        tracing::debug!(mac = %req.mac, text, "NAK");
        let nak = reply::nak(&req.msg, req.server_id, text);
        self.send(req, nak, MessageType::Nak);
        Ok(())
    }

    /// OFFER/ACK body: `yiaddr`, lease times, configuration options, boot fields.
    fn fill(
        &self,
        out: &mut Message,
        req: &Request,
        client: &Client,
        ip: Ipv4Addr,
        decision: &BootDecision,
    ) {
        let subnet = &self.config.subnets[req.subnet];
        out.yiaddr = ip;
        reply::set_lease_time(&mut out.options, subnet.lease_time);
        let hostname = client.machine().map(|m| m.hostname.as_str());
        reply::set_config_options(&mut out.options, &req.msg.options, subnet, hostname);
        let next_server = subnet.next_server.unwrap_or(req.server_id);
        reply::set_boot(out, decision, next_server);
    }

    /// Encode `msg` and queue it to where RFC 2131 §4.1 says.
    fn send(&mut self, req: &Request, msg: Message, message_type: MessageType) {
        let Some(destination) = reply::destination(&req.msg, &msg, message_type, req.link) else {
            return;
        };
        let mut payload = Vec::with_capacity(msg.buffer_len());
        msg.emit(&mut payload);
        self.stats.count_reply(message_type);
        self.commands.push_back(Command::Send(Reply {
            destination,
            message_type,
            payload,
        }));
    }

    /// Registered machine, discovery-mode unknown, or a drop (logged at a bounded rate).
    fn client(&mut self, now: UnixTime, req: &Request) -> Result<Client, DropReason> {
        if let Some(machine) = self.config.machines.get(&req.mac) {
            return Ok(Client::Registered(machine.clone()));
        }
        if self.config.subnets[req.subnet].allow_unknown {
            return Ok(Client::Unknown);
        }
        let verdict = self.unknown_log.check(now);
        if let Some(n) = verdict.suppressed {
            tracing::info!(
                "{n} more requests from unregistered MACs were not logged in the last minute"
            );
        }
        if verdict.log {
            let opts = &req.msg.options;
            tracing::info!(
                mac = %req.mac,
                message_type = req.message_type.as_str(),
                subnet = %self.config.subnets[req.subnet].cidr,
                arch = opts.client_arch(),
                vendor_class = opts.vendor_class().map(String::from_utf8_lossy).as_deref(),
                "ignoring an unregistered MAC: register the machine, or set allow_unknown on the \
                 subnet to discover it"
            );
        }
        Err(DropReason::UnknownClient)
    }

    /// The address this client gets in the request's subnet (see the module doc for the order).
    fn address_for(
        &mut self,
        req: &Request,
        client: &Client,
        requested: Option<Ipv4Addr>,
    ) -> Result<(Ipv4Addr, Source), DropReason> {
        let subnet = &self.config.subnets[req.subnet];
        if let Some(reserved) = client.machine().and_then(|m| m.ip) {
            if !subnet.cidr.contains(&reserved) {
                let cidr = subnet.cidr;
                self.warn_once(format!("reservation {}", req.mac), || {
                    format!(
                        "machine {} is reserved {reserved}, which is not in subnet {cidr} it asks \
                         from: not answering it; fix its ip or the subnet",
                        req.mac
                    )
                });
                return Err(DropReason::NoSubnet);
            }
            if self.table.holder(reserved) == Holder::Quarantined {
                return Err(DropReason::Quarantined);
            }
            return Ok((reserved, Source::Reserved));
        }
        let Some(pool) = self.table.pool(req.subnet) else {
            return Err(DropReason::PoolExhausted);
        };
        let usable = |ip: &Ipv4Addr| pool.is_dynamic(*ip) && self.table.free_for(*ip, req.mac);
        let candidates = [
            (self.table.offer_of(req.mac), Source::Offered),
            (self.table.previous(req.mac), Source::Previous),
            (requested, Source::Requested),
        ];
        for (ip, source) in candidates {
            if let Some(ip) = ip.filter(usable) {
                return Ok((ip, source));
            }
        }
        match pool.next_free() {
            Some(ip) => Ok((ip, Source::Cursor)),
            None => {
                let cidr = subnet.cidr;
                tracing::warn!(subnet = %cidr, mac = %req.mac, "dynamic range exhausted");
                Err(DropReason::PoolExhausted)
            }
        }
    }

    /// The boot decision for this client (address only for unknown clients).
    fn boot_decision(&mut self, req: &Request, client: &Client) -> BootDecision {
        let Some(machine) = client.machine() else {
            return boot::decide(None, false, &req.msg.options);
        };
        let subnet = &self.config.subnets[req.subnet];
        let name = machine
            .boot_profile
            .as_deref()
            .or(subnet.boot_profile.as_deref());
        let profile: Option<&BootProfile> = match name {
            Some(name) => self.config.boot_profiles.get(name),
            None => self.config.boot_profiles.get("default"),
        };
        let decision = boot::decide(profile, machine.netboot, &req.msg.options);
        let missing_profile = name.filter(|_| profile.is_none()).map(str::to_owned);
        let profile_name = profile.map(|p| p.name.clone()).unwrap_or_default();
        if let Some(name) = missing_profile {
            self.warn_once(format!("profile {name}"), || {
                format!(
                    "boot profile {name:?} is not defined: machines naming it get no boot file; \
                     define it or fix the name"
                )
            });
        }
        if let Some(field) = decision.missing {
            let arch = decision
                .arch
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            self.warn_once(format!("profile {profile_name} {field}"), || {
                format!(
                    "boot profile {profile_name:?} has no {field} (client arch {arch}): such \
                     machines get an address but no boot file; set {field} in the profile"
                )
            });
        }
        if let Some((file, transport)) = &decision.boot_file {
            let http = *transport == Transport::Http;
            tracing::debug!(mac = %req.mac, file, http, "boot file");
        }
        decision
    }

    /// Record (and emit) a machine seen in discovery mode.
    fn discovered_machine(&mut self, now: UnixTime, req: &Request, ip: Ipv4Addr) {
        let opts = &req.msg.options;
        let first_seen = self.discovered.get(&req.mac).map_or(now, |d| d.first_seen);
        let record = DiscoveredMachine {
            mac: req.mac,
            ip,
            first_seen,
            last_seen: now,
            arch: opts.client_arch(),
            vendor_class: opts
                .vendor_class()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            uuid: opts.client_uuid().map(<[u8]>::to_vec),
            hostname: opts
                .hostname()
                .filter(|h| h.len() <= MAX_HOSTNAME)
                .map(str::to_owned),
        };
        if self.discovered.len() < MAX_DISCOVERED || self.discovered.contains_key(&req.mac) {
            self.discovered.insert(req.mac, record.clone());
        }
        self.commands.push_back(Command::Discovered(record));
    }
}
