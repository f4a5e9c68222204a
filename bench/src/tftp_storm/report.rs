//! What a storm measured: counts, aggregate throughput, completion-time percentiles, as one
//! summary line or JSON.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::dhcp_load::Latency;

/// Counts over all clients of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StormCounters {
    /// Clients in the run.
    pub clients: u64,
    /// Clients that sent their request.
    pub started: u64,
    /// Clients that got the whole file.
    pub completed: u64,
    /// Clients that gave up after their resends.
    pub failed_timeout: u64,
    /// Clients the server sent an ERROR.
    pub failed_server_error: u64,
    /// Clients whose file had the wrong length.
    pub failed_size: u64,
    /// Clients that got a malformed or oversized packet.
    pub failed_protocol: u64,
    /// Clients still running at the hard stop.
    pub unfinished: u64,
    /// Payload bytes received in order, by all clients.
    pub bytes: u64,
    /// ACKs sent.
    pub acks: u64,
    /// ACKs sent again (timeouts, gaps, duplicates).
    pub reacks: u64,
    /// Requests sent again.
    pub rrq_resends: u64,
    /// DATA blocks out of order or duplicated.
    pub out_of_order: u64,
    /// Packets from a port other than the client's TID.
    pub stray: u64,
    /// Clients that got an OACK.
    pub oacks: u64,
    /// Clients whose OACK granted a window size.
    pub windowsize_granted: u64,
    /// Smallest block size in use.
    pub blksize_min: u64,
    /// Largest block size in use.
    pub blksize_max: u64,
    /// Smallest window in use.
    pub window_min: u64,
    /// Largest window in use.
    pub window_max: u64,
}

impl StormCounters {
    /// Clients that ended without the file.
    pub fn failed(&self) -> u64 {
        self.failed_timeout + self.failed_server_error + self.failed_size + self.failed_protocol
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormReport {
    /// Counts (flattened into the JSON object).
    #[serde(flatten)]
    pub counters: StormCounters,
    /// Clients without the file (failed; unfinished not included).
    pub failed: u64,
    /// From the first request to the last client's end (or the hard stop), seconds.
    pub elapsed_s: f64,
    /// Payload bytes per second over `elapsed_s`, in MB/s (10^6 bytes).
    pub aggregate_mb_per_s: f64,
    /// Request → last block, of the clients that completed.
    pub completion: Latency,
    /// Request → first block.
    pub first_byte: Latency,
    /// The generator's own CPU time (user + system), seconds; set by the driver.
    pub generator_cpu_s: Option<f64>,
}

impl StormReport {
    /// Builds the report.
    pub fn new(
        counters: StormCounters,
        elapsed: Duration,
        completion: &[Duration],
        first_byte: &[Duration],
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        Self {
            failed: counters.failed(),
            aggregate_mb_per_s: if secs > 0.0 {
                counters.bytes as f64 / secs / 1e6
            } else {
                0.0
            },
            elapsed_s: secs,
            completion: Latency::from_samples(completion),
            first_byte: Latency::from_samples(first_byte),
            generator_cpu_s: None,
            counters,
        }
    }
}

impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "{:.1} MB/s aggregate: {}/{} completed, {} failed (timeout {}, error {}, size {}, \
             protocol {}), {} unfinished, {:.1} MB in {:.2} s; completion p50 {:.0} ms p99 {:.0} \
             ms max {:.0} ms; first block p50 {:.1} ms p99 {:.1} ms; blksize {}-{}, window {}-{} \
             ({} of {} granted a window); {} ACKs, {} re-ACKs, {} request resends, {} out of \
             order, {} stray",
            self.aggregate_mb_per_s,
            c.completed,
            c.clients,
            self.failed,
            c.failed_timeout,
            c.failed_server_error,
            c.failed_size,
            c.failed_protocol,
            c.unfinished,
            c.bytes as f64 / 1e6,
            self.elapsed_s,
            self.completion.p50_ms,
            self.completion.p99_ms,
            self.completion.max_ms,
            self.first_byte.p50_ms,
            self.first_byte.p99_ms,
            c.blksize_min,
            c.blksize_max,
            c.window_min,
            c.window_max,
            c.windowsize_granted,
            c.started,
            c.acks,
            c.reacks,
            c.rrq_resends,
            c.out_of_order,
            c.stray,
        )?;
        crate::write_generator_cpu(f, self.generator_cpu_s, self.elapsed_s)
    }
}
