//! The storm: N clients fetching the same file, started all at once (a rack rebooting) or at a
//! steady rate, bounded by a hard stop. Sans-IO like [`Client`]: the driver feeds datagrams by
//! client index and calls [`Storm::handle_timeout`] now and then (a coarse scan is enough:
//! timeouts are hundreds of milliseconds).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::client::{Client, ClientParams, Failure, State, Transmit};
use super::report::{StormCounters, StormReport};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StormConfig {
    /// Simulated clients, each with its own socket.
    pub clients: usize,
    /// How each behaves.
    pub params: ClientParams,
    /// Client starts per second; `None` starts them all at once.
    pub ramp: Option<f64>,
}

/// The storm; see the module docs.
#[derive(Debug)]
pub struct Storm {
    config: StormConfig,
    origin: Instant,
    clients: Vec<Client>,
    started: usize,
    queue: VecDeque<(usize, Transmit)>,
}

impl Storm {
    /// A storm whose schedule starts at `now`.
    pub fn new(config: StormConfig, now: Instant) -> Self {
        Self {
            clients: vec![Client::new(config.params); config.clients],
            config,
            origin: now,
            started: 0,
            queue: VecDeque::new(),
        }
    }

    /// The next packet to send (client index and what), if any is due at `now`: answers and
    /// resends first, then requests of clients whose start is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(usize, Transmit)> {
        if let Some(t) = self.queue.pop_front() {
            return Some(t);
        }
        if self.started < self.clients.len() && self.next_start_at() <= now {
            let i = self.started;
            self.started += 1;
            return Some((i, self.clients[i].start(now)));
        }
        None
    }

    /// When the next client is due to start.
    fn next_start_at(&self) -> Instant {
        match self.config.ramp {
            Some(rate) if rate > 0.0 => {
                self.origin + Duration::from_secs_f64(self.started as f64 / rate)
            }
            _ => self.origin,
        }
    }

    /// A datagram for client `i` (see [`Client::handle`]).
    pub fn handle(&mut self, now: Instant, i: usize, from_port: u16, head: &[u8], len: usize) {
        if let Some(c) = self.clients.get_mut(i)
            && let Some(t) = c.handle(now, from_port, head, len)
        {
            self.queue.push_back((i, t));
        }
    }

    /// Resend or fail what is overdue at `now` (scans every client).
    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, c) in self.clients.iter_mut().enumerate() {
            if let Some(t) = c.handle_timeout(now) {
                self.queue.push_back((i, t));
            }
        }
    }

    /// When the next client start is due, if any is left (timeouts are scanned separately).
    pub fn next_start(&self) -> Option<Instant> {
        (self.started < self.clients.len()).then(|| self.next_start_at())
    }

    /// Every client started and finished.
    pub fn is_done(&self) -> bool {
        self.started == self.clients.len() && self.clients.iter().all(Client::is_finished)
    }

    /// Client `i`.
    pub fn client(&self, i: usize) -> Option<&Client> {
        self.clients.get(i)
    }

    /// The result at `now` (clients still running count as unfinished).
    pub fn report(&self, now: Instant) -> StormReport {
        let mut c = StormCounters {
            clients: self.clients.len() as u64,
            started: self.started as u64,
            ..StormCounters::default()
        };
        let mut completion = Vec::new();
        let mut first_byte = Vec::new();
        let mut first_start: Option<Instant> = None;
        let mut last_end: Option<Instant> = None;
        let mut any_unfinished = false;
        for cl in &self.clients {
            let Some(start) = cl.started_at() else {
                continue;
            };
            first_start = Some(first_start.map_or(start, |f| f.min(start)));
            c.bytes += cl.bytes();
            let k = cl.counters();
            c.acks += k.acks;
            c.reacks += k.reacks;
            c.rrq_resends += k.rrq_resends;
            c.out_of_order += k.out_of_order;
            c.stray += k.stray;
            if let Some(g) = cl.granted() {
                c.oacks += 1;
                if g.windowsize.is_some() {
                    c.windowsize_granted += 1;
                }
            }
            c.blksize_min = min_nonzero(c.blksize_min, cl.blksize() as u64);
            c.blksize_max = c.blksize_max.max(cl.blksize() as u64);
            c.window_min = min_nonzero(c.window_min, u64::from(cl.window()));
            c.window_max = c.window_max.max(u64::from(cl.window()));
            if let Some(t) = cl.first_byte_time() {
                first_byte.push(t);
            }
            match cl.state() {
                State::Done => {
                    c.completed += 1;
                    completion.extend(cl.completion_time());
                }
                State::Failed(f) => match f {
                    Failure::Timeout => c.failed_timeout += 1,
                    Failure::ServerError(_) => c.failed_server_error += 1,
                    Failure::SizeMismatch => c.failed_size += 1,
                    Failure::Protocol => c.failed_protocol += 1,
                },
                State::Idle | State::Requesting | State::Receiving => {
                    c.unfinished += 1;
                    any_unfinished = true;
                }
            }
            if let Some(end) = cl.finished_at() {
                last_end = Some(last_end.map_or(end, |l| l.max(end)));
            }
        }
        let end = if any_unfinished { Some(now) } else { last_end };
        let elapsed = match (first_start, end) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        StormReport::new(c, elapsed, &completion, &first_byte)
    }
}

fn min_nonzero(a: u64, b: u64) -> u64 {
    if a == 0 { b } else { a.min(b) }
}
