//! The load generator's core: which client starts a DORA when, what to send, what a reply
//! means, and when a try times out.
//!
//! Sans-IO like the daemon's cores: [`Generator`] never reads a clock or touches a socket. The
//! driver feeds it replies ([`Generator::handle_reply`]) and timer ticks
//! ([`Generator::handle_timeout`]), sends what [`Generator::poll_transmit`] returns, and sleeps
//! until [`Generator::poll_timeout`] or the next reply. Tests run it on virtual time against a
//! scripted server.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ims_proto::MacAddr;

use super::packet::{Addressing, Reply, ReplyKind, Request, decode_reply, encode_request};
use super::report::{Counters, Report};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The simulated clients, one MAC each. DORA number `n` uses `macs[n % macs.len()]`.
    pub macs: Vec<MacAddr>,
    /// How many DORAs to start in total.
    pub count: u64,
    /// Target DORA starts per second; `None` starts as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Most DORAs outstanding at once.
    pub concurrency: usize,
    /// How long to wait for a reply before retransmitting (or giving up).
    pub timeout: Duration,
    /// Sends per phase (DISCOVER, REQUEST), retransmissions included; at least 1.
    pub tries: u32,
    /// Transaction id of DORA 0; DORA `n` uses `xid_base + n` (wrapping).
    pub xid_base: u32,
    /// Relay or direct addressing of every request.
    pub addressing: Addressing,
}

/// Why a [`LoadConfig`] cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// No client MACs.
    #[error("no client MAC addresses: give --macs FILE with one MAC per line, or --clients N")]
    NoClients,
    /// A multicast MAC cannot be a client.
    #[error("{0} is a multicast MAC and cannot be a DHCP client; use unicast MACs such as 02:…")]
    MulticastMac(MacAddr),
    /// `tries` or `concurrency` is zero.
    #[error("--tries and --concurrency must be at least 1")]
    Zero,
    /// `rate` is not a positive finite number.
    #[error("--rate must be a positive number of DORAs per second, got {0}")]
    BadRate(f64),
    /// More DORAs than distinct transaction ids.
    #[error("--count {0} exceeds the 2^32 distinct transaction ids of one run")]
    TooMany(u64),
}

/// A request to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The simulated client sending it (the Ethernet source in direct mode).
    pub mac: MacAddr,
    /// The encoded BOOTREQUEST (UDP payload).
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Discovering,
    Requesting {
        offered: Ipv4Addr,
        server_id: Option<Ipv4Addr>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Exchange {
    mac_index: usize,
    started: Instant,
    phase: Phase,
    /// Sends so far in this phase.
    sends: u32,
    /// Identifies the latest send; older deadlines for this exchange are stale.
    token: u64,
}

/// The load generator state machine.
#[derive(Debug)]
pub struct Generator {
    config: LoadConfig,
    origin: Instant,
    started: u64,
    outstanding: BTreeMap<u32, Exchange>,
    busy: Vec<bool>,
    acked: Vec<bool>,
    /// Retransmission deadlines in send order; all tries use the same timeout, so this is sorted.
    deadlines: VecDeque<(Instant, u32, u64)>,
    queue: VecDeque<Transmit>,
    next_token: u64,
    counters: Counters,
    latencies: Vec<Duration>,
    last_finish: Option<Instant>,
    /// When the last DORA so far started, and how many had completed by then.
    last_start: Option<(Instant, u64)>,
}

impl Generator {
    /// A generator whose schedule starts at `now`.
    pub fn new(config: LoadConfig, now: Instant) -> Result<Self, ConfigError> {
        if config.macs.is_empty() {
            return Err(ConfigError::NoClients);
        }
        if let Some(mac) = config.macs.iter().find(|m| m.is_multicast()) {
            return Err(ConfigError::MulticastMac(*mac));
        }
        if config.tries == 0 || config.concurrency == 0 {
            return Err(ConfigError::Zero);
        }
        if let Some(rate) = config.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(ConfigError::BadRate(rate));
        }
        if config.count > u64::from(u32::MAX) + 1 {
            return Err(ConfigError::TooMany(config.count));
        }
        let n = config.macs.len();
        Ok(Self {
            origin: now,
            started: 0,
            outstanding: BTreeMap::new(),
            busy: vec![false; n],
            acked: vec![false; n],
            deadlines: VecDeque::new(),
            queue: VecDeque::new(),
            next_token: 0,
            counters: Counters::default(),
            latencies: Vec::with_capacity(usize::try_from(config.count).unwrap_or(0).min(1 << 24)),
            last_finish: None,
            last_start: None,
            config,
        })
    }

    /// The next request to send, if one is due at `now`. Drain it after every `handle_*` call
    /// and whenever `now` reaches [`Self::poll_timeout`]: requests answering an OFFER and
    /// retransmissions come first, then new DORAs as the rate and concurrency limits allow.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.queue.pop_front() {
            return Some(t);
        }
        let mac_index = self.startable()?;
        if now < self.next_start_at() {
            return None;
        }
        let xid = self.config.xid_base.wrapping_add(self.started as u32);
        self.started += 1;
        self.busy[mac_index] = true;
        self.last_start = Some((now, self.counters.completed));
        let token = self.token();
        self.outstanding.insert(
            xid,
            Exchange {
                mac_index,
                started: now,
                phase: Phase::Discovering,
                sends: 1,
                token,
            },
        );
        self.deadlines
            .push_back((now + self.config.timeout, xid, token));
        self.counters.discovers_sent += 1;
        Some(self.encode(xid, mac_index, Phase::Discovering))
    }

    /// When the generator next needs [`Self::handle_timeout`] or [`Self::poll_transmit`], if
    /// ever. Re-read it after every `handle_*`/`poll_transmit` call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.front().map(|d| d.0);
        let start = self.startable().map(|_| self.next_start_at());
        match (deadline, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Retransmits or fails every exchange whose reply is overdue at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, xid, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(ex) = self.outstanding.get(&xid).copied() else {
                continue;
            };
            if ex.token != token {
                continue;
            }
            if ex.sends < self.config.tries {
                self.counters.retransmits += 1;
                match ex.phase {
                    Phase::Discovering => self.counters.discovers_sent += 1,
                    Phase::Requesting { .. } => self.counters.requests_sent += 1,
                }
                self.send(
                    now,
                    xid,
                    Exchange {
                        sends: ex.sends + 1,
                        ..ex
                    },
                );
            } else {
                match ex.phase {
                    Phase::Discovering => self.counters.failed_no_offer += 1,
                    Phase::Requesting { .. } => self.counters.failed_no_ack += 1,
                }
                self.finish(now, xid, ex);
            }
        }
    }

    /// Takes a DHCP reply (UDP payload) received at `now`.
    pub fn handle_reply(&mut self, now: Instant, payload: &[u8]) {
        let Ok(reply) = decode_reply(payload) else {
            self.counters.malformed += 1;
            return;
        };
        match reply.kind {
            ReplyKind::Offer => self.counters.offers += 1,
            ReplyKind::Ack => self.counters.acks += 1,
            ReplyKind::Nak => self.counters.naks += 1,
            ReplyKind::Other(_) => {}
        }
        let Some(ex) = self.outstanding.get(&reply.xid).copied() else {
            self.counters.stray += 1;
            return;
        };
        if reply.mac != self.config.macs[ex.mac_index] {
            self.counters.stray += 1;
            return;
        }
        self.on_reply(now, reply, ex);
    }

    fn on_reply(&mut self, now: Instant, reply: Reply, ex: Exchange) {
        match (ex.phase, reply.kind) {
            (Phase::Discovering, ReplyKind::Offer) => {
                let phase = Phase::Requesting {
                    offered: reply.yiaddr,
                    server_id: reply.server_id,
                };
                self.counters.requests_sent += 1;
                self.send(
                    now,
                    reply.xid,
                    Exchange {
                        phase,
                        sends: 1,
                        ..ex
                    },
                );
            }
            (Phase::Requesting { offered, .. }, ReplyKind::Ack) => {
                if reply.yiaddr == offered {
                    self.counters.completed += 1;
                    self.latencies
                        .push(now.saturating_duration_since(ex.started));
                    self.acked[ex.mac_index] = true;
                } else {
                    self.counters.failed_wrong_address += 1;
                }
                self.finish(now, reply.xid, ex);
            }
            (Phase::Requesting { .. }, ReplyKind::Nak) => {
                self.counters.failed_nak += 1;
                self.finish(now, reply.xid, ex);
            }
            // A duplicate OFFER for a retransmitted DISCOVER, an ACK before any REQUEST, …
            _ => self.counters.stray += 1,
        }
    }

    /// Whether every DORA has been started and has finished.
    pub fn is_done(&self) -> bool {
        self.started == self.config.count && self.outstanding.is_empty() && self.queue.is_empty()
    }

    /// The figures so far. Exchanges still outstanding count as unfinished; the run's length
    /// is from the start to the last finished exchange when done, else to `now`. The sustained
    /// rate counts only the DORAs completed while new ones were still being started, over that
    /// window, so the drain at the end (a few stragglers waiting out a retransmission timeout)
    /// does not dilute it.
    pub fn report(&self, now: Instant) -> Report {
        let end = match self.last_finish {
            Some(t) if self.is_done() => t,
            _ => now,
        };
        let mut counters = self.counters.clone();
        counters.started = self.started;
        counters.unfinished = self.outstanding.len() as u64;
        counters.acked_macs = self.acked.iter().filter(|a| **a).count() as u64;
        let sustained = self
            .last_start
            .map(|(at, completed)| (at.saturating_duration_since(self.origin), completed));
        Report::new(
            counters,
            end.saturating_duration_since(self.origin),
            sustained,
            &self.latencies,
        )
    }

    fn startable(&self) -> Option<usize> {
        if self.started >= self.config.count || self.outstanding.len() >= self.config.concurrency {
            return None;
        }
        let mac_index = (self.started % self.config.macs.len() as u64) as usize;
        (!self.busy[mac_index]).then_some(mac_index)
    }

    fn next_start_at(&self) -> Instant {
        match self.config.rate {
            Some(rate) => self.origin + Duration::from_secs_f64(self.started as f64 / rate),
            None => self.origin,
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn send(&mut self, now: Instant, xid: u32, ex: Exchange) {
        let token = self.token();
        self.outstanding.insert(xid, Exchange { token, ..ex });
        self.deadlines
            .push_back((now + self.config.timeout, xid, token));
        let t = self.encode(xid, ex.mac_index, ex.phase);
        self.queue.push_back(t);
    }

    fn finish(&mut self, now: Instant, xid: u32, ex: Exchange) {
        self.outstanding.remove(&xid);
        self.busy[ex.mac_index] = false;
        self.last_finish = Some(now);
    }

    fn encode(&self, xid: u32, mac_index: usize, phase: Phase) -> Transmit {
        let mac = self.config.macs[mac_index];
        let request = match phase {
            Phase::Discovering => Request::Discover,
            Phase::Requesting { offered, server_id } => Request::Select { offered, server_id },
        };
        Transmit {
            mac,
            payload: encode_request(request, mac, xid, self.config.addressing),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
