//! `api-bench`: load on `ims-control`'s REST API. It logs in, creates a cluster, creates
//! machines through `POST /api/machines` (the first `--create` timed as one phase, the rest up
//! to `--machines` as a second), then lists them all in one page
//! (`GET /api/machines?cluster=ID&page_size=N`) one request at a time and concurrently, and
//! reads 100-machine pages concurrently. Each phase reports requests/s and latency
//! percentiles; every response is checked (status, and for the full lists the count), so a
//! fast wrong answer is a failure, not a figure.

pub mod http;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::dhcp_load::Latency;
use http::Conn;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's address (HTTP).
    pub addr: SocketAddr,
    /// Admin user name.
    pub username: String,
    /// Admin password.
    pub password: String,
    /// Machines in the cluster at the end (the size of the full lists).
    pub machines: usize,
    /// Machines created in the timed "create" phase.
    pub create: usize,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Full-list requests per list phase.
    pub list_repeats: usize,
    /// 100-machine page requests.
    pub page_requests: usize,
    /// Delete the cluster (and its machines) at the end.
    pub cleanup: bool,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// What was done.
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed (transport error, unexpected status or content).
    pub failures: usize,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Latency percentiles.
    pub latency: Latency,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

/// Why the run could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Logging in failed.
    #[error("login as `{user}` failed: {detail}")]
    Login {
        /// User.
        user: String,
        /// What the server said.
        detail: String,
    },
    /// A set-up request failed.
    #[error("{0}")]
    Setup(String),
}

fn body_json(r: &http::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Runs every phase.
///
/// # Errors
/// Login or cluster creation failed.
pub fn run(o: &Options) -> Result<Vec<Phase>, BenchError> {
    let mut conn = Conn::new(o.addr);
    let login = json!({"username": o.username, "password": o.password}).to_string();
    let r = conn
        .request("POST", "/api/token/", None, Some(login.as_bytes()))
        .map_err(|e| BenchError::Setup(format!("cannot reach {}: {e}", o.addr)))?;
    let token = body_json(&r)["access"]
        .as_str()
        .map(ToOwned::to_owned)
        .ok_or_else(|| BenchError::Login {
            user: o.username.clone(),
            detail: format!("HTTP {} {}", r.status, String::from_utf8_lossy(&r.body)),
        })?;

    #[allow(clippy::disallowed_methods)] // a unique suffix for this run's names
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let body = json!({"name": format!("api-bench-{nonce}"), "description": "api-bench"});
    let r = conn
        .request(
            "POST",
            "/api/cluster/",
            Some(&token),
            Some(body.to_string().as_bytes()),
        )
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let cluster = body_json(&r)["id"].as_i64().ok_or_else(|| {
        BenchError::Setup(format!(
            "creating the cluster failed: HTTP {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))
    })?;
    // Distinct MACs and IPs per run: the low 8 bits of the nonce pick the second octet.
    let tag = u8::try_from(nonce % 200).unwrap_or(0);

    let create = o.create.min(o.machines);
    let mut phases = vec![create_phase(o, &token, cluster, tag, 0..create, "create")];
    if o.machines > create {
        phases.push(create_phase(
            o,
            &token,
            cluster,
            tag,
            create..o.machines,
            "create (fill)",
        ));
    }

    let list = format!(
        "/api/machines/?cluster={cluster}&page_size={}",
        o.machines.max(1)
    );
    let expect = i64::try_from(o.machines).unwrap_or(i64::MAX);
    let check_list = |r: &http::Response| -> Result<(), String> {
        let v = body_json(r);
        let n = v["results"].as_array().map_or(0, Vec::len);
        if r.status == 200 && v["count"].as_i64() == Some(expect) && n == o.machines {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}, count {} results {n}",
                r.status, v["count"]
            ))
        }
    };
    phases.push(phase(
        &format!("list {} in one page", o.machines),
        o.list_repeats,
        1,
        o.addr,
        |_, c| c.request("GET", &list, Some(&token), None),
        check_list,
    ));
    phases.push(phase(
        &format!("list {} in one page, concurrent", o.machines),
        o.list_repeats,
        o.concurrency,
        o.addr,
        |_, c| c.request("GET", &list, Some(&token), None),
        check_list,
    ));
    let pages = o.machines.div_ceil(100).max(1);
    phases.push(phase(
        "get a 100-machine page",
        o.page_requests,
        o.concurrency,
        o.addr,
        |i, c| {
            let path = format!(
                "/api/machines/?cluster={cluster}&page={}&page_size=100",
                i % pages + 1
            );
            c.request("GET", &path, Some(&token), None)
        },
        |r| {
            if r.status == 200 {
                Ok(())
            } else {
                Err(format!("HTTP {}", r.status))
            }
        },
    ));

    if o.cleanup {
        let _ = conn.request(
            "DELETE",
            &format!("/api/cluster/{cluster}/"),
            Some(&token),
            None,
        );
    }
    Ok(phases)
}

fn create_phase(
    o: &Options,
    token: &str,
    cluster: i64,
    tag: u8,
    range: std::ops::Range<usize>,
    name: &str,
) -> Phase {
    let start = range.start;
    phase(
        name,
        range.len(),
        o.concurrency,
        o.addr,
        |i, c| {
            let n = start + i;
            let [_, b, c3, d] = u32::try_from(n).unwrap_or(0).to_be_bytes();
            let body = json!({
                "cluster": cluster,
                "hostname": format!("bench-{n}"),
                "mac": format!("02:{tag:02x}:00:{b:02x}:{c3:02x}:{d:02x}"),
                "ip": format!("10.{tag}.{c3}.{d}"),
                "role": "WORKER",
                "cpu_cores": 16,
            });
            c.request(
                "POST",
                "/api/machines/",
                Some(token),
                Some(body.to_string().as_bytes()),
            )
        },
        |r| {
            if r.status == 201 {
                Ok(())
            } else {
                Err(format!(
                    "HTTP {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ))
            }
        },
    )
}

/// Runs `requests` calls of `call(i, conn)` on `concurrency` threads with one connection each.
fn phase<F, C>(
    name: &str,
    requests: usize,
    concurrency: usize,
    addr: SocketAddr,
    call: F,
    check: C,
) -> Phase
where
    F: Fn(usize, &mut Conn) -> std::io::Result<http::Response> + Sync,
    C: Fn(&http::Response) -> Result<(), String> + Sync,
{
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(requests));
    let failures = AtomicUsize::new(0);
    let first_failure = Mutex::new(None::<String>);
    let threads = concurrency.clamp(1, requests.max(1));
    #[allow(clippy::disallowed_methods)] // the benchmark's own clock
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut conn = Conn::new(addr);
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    #[allow(clippy::disallowed_methods)]
                    let t = Instant::now();
                    let outcome = call(i, &mut conn)
                        .map_err(|e| e.to_string())
                        .and_then(|r| check(&r));
                    match outcome {
                        Ok(()) => local.push(t.elapsed()),
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            let mut f = first_failure.lock().unwrap_or_else(|p| p.into_inner());
                            f.get_or_insert(e);
                        }
                    }
                }
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    let elapsed = started.elapsed();
    let samples: Vec<Duration> = samples.into_inner().unwrap_or_else(|p| p.into_inner());
    let secs = elapsed.as_secs_f64();
    Phase {
        name: name.to_owned(),
        requests,
        failures: failures.into_inner(),
        elapsed_s: secs,
        #[allow(clippy::cast_precision_loss)]
        requests_per_s: if secs > 0.0 {
            samples.len() as f64 / secs
        } else {
            0.0
        },
        concurrency: threads,
        latency: Latency::from_samples(&samples),
        first_failure: first_failure
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<40} {:>6} req x{:<3} {:>9.1} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  failures {}",
            self.name,
            self.requests,
            self.concurrency,
            self.requests_per_s,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.failures
        )?;
        if let Some(e) = &self.first_failure {
            write!(f, " (first: {e})")?;
        }
        Ok(())
    }
}
