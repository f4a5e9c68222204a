//! Readiness: whether every service the configuration enables has opened its sockets and is
//! serving, for `GET /readyz` on the metrics listener (see [`crate::metrics::router`]).
//!
//! `/healthz` only says the process is up; `/readyz` answers 200 only once each service that
//! was announced with [`Readiness::starting`] has reported [`Readiness::ready`], and 503 again
//! once [`Readiness::stopping`] was called (shutdown began). The drivers and `main` report the
//! real moments: the DHCP driver when its raw sockets are registered and its loop runs, TFTP
//! when its socket is bound and its driver thread started, HTTP when its listener is bound and
//! served. The protocol cores know nothing of this (they stay sans-IO).
//!
//! Every change also sets the `netbootd_ready` gauge (0/1, [`crate::metrics::READY`]).

use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics;

#[derive(Debug, Default)]
struct Inner {
    /// In the order announced: the service, and what it is still doing (`None`: ready).
    services: Vec<(String, Option<String>)>,
    stopping: bool,
}

impl Inner {
    fn ready(&self) -> bool {
        !self.stopping && self.services.iter().all(|(_, doing)| doing.is_none())
    }
}

/// Shared readiness of the daemon's services. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<Mutex<Inner>>,
}

impl Readiness {
    /// Nothing announced yet (ready until a service is announced). Sets `netbootd_ready`.
    pub fn new() -> Self {
        let readiness = Self::default();
        metrics::set_ready(true);
        readiness
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let was = inner.ready();
        f(&mut inner);
        let now = inner.ready();
        metrics::set_ready(now);
        if now && !was {
            let services: Vec<&str> = inner.services.iter().map(|(n, _)| n.as_str()).collect();
            tracing::info!(services = %services.join(","), "ready: every enabled service is serving");
        }
    }

    /// `service` is enabled and not serving yet; `doing` says what it is doing (shown by
    /// `/readyz`, such as `opening raw sockets on eth1`). Announcing it again replaces `doing`.
    pub fn starting(&self, service: &str, doing: impl Into<String>) {
        let doing = Some(doing.into());
        self.update(
            |inner| match inner.services.iter_mut().find(|(name, _)| name == service) {
                Some(entry) => entry.1 = doing,
                None => inner.services.push((service.to_owned(), doing)),
            },
        );
    }

    /// `service` has opened its sockets and is serving.
    pub fn ready(&self, service: &str) {
        self.update(
            |inner| match inner.services.iter_mut().find(|(name, _)| name == service) {
                Some(entry) => entry.1 = None,
                None => inner.services.push((service.to_owned(), None)),
            },
        );
    }

    /// Shutdown began: not ready from now on.
    pub fn stopping(&self) {
        self.update(|inner| inner.stopping = true);
    }

    /// Whether every announced service is serving and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ready()
    }

    /// `Ok` when ready; otherwise what is not ready yet, such as
    /// `dhcp (opening raw sockets on eth1), tftp (binding 0.0.0.0:69)` or `shutting down`.
    ///
    /// # Errors
    /// The services not ready yet (or shutdown), as one line.
    pub fn check(&self) -> Result<(), String> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.stopping {
            return Err("shutting down".to_owned());
        }
        let waiting: Vec<String> = inner
            .services
            .iter()
            .filter_map(|(name, doing)| doing.as_ref().map(|d| format!("{name} ({d})")))
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{TestServer, get};

    #[test]
    fn check_names_what_is_not_ready_in_order() {
        let r = Readiness::new();
        assert_eq!(r.check(), Ok(()), "nothing announced");
        r.starting("dhcp", "opening raw sockets on eth1");
        r.starting("tftp", "binding 0.0.0.0:69");
        assert!(!r.is_ready());
        assert_eq!(
            r.check(),
            Err("dhcp (opening raw sockets on eth1), tftp (binding 0.0.0.0:69)".to_owned())
        );
        r.ready("tftp");
        assert_eq!(
            r.check(),
            Err("dhcp (opening raw sockets on eth1)".to_owned())
        );
        r.starting("dhcp", "registering sockets");
        assert_eq!(r.check(), Err("dhcp (registering sockets)".to_owned()));
        let clone = r.clone();
        clone.ready("dhcp");
        assert!(r.is_ready(), "clones share the state");
        assert_eq!(r.check(), Ok(()));
        r.stopping();
        assert!(!r.is_ready());
        assert_eq!(r.check(), Err("shutting down".to_owned()));
        r.ready("dhcp");
        assert!(!r.is_ready(), "stopping is final");
    }

    /// The metrics router's `/readyz` follows the state: 503 naming what is missing, 200 once
    /// everything is serving, 503 again on shutdown; `/healthz` is 200 throughout.
    #[test]
    fn metrics_router_readyz_answers_503_then_200_then_503() {
        let recorder = metrics::builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        let readiness = ::metrics::with_local_recorder(&recorder, || {
            let r = Readiness::new();
            r.starting("dhcp", "opening raw sockets on eth1");
            r.starting("http", "binding 0.0.0.0:8080");
            r
        });
        let server = TestServer::start(handle.clone(), readiness.clone());
        let addr = server.addr;

        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.ends_with(
                "\r\n\r\nnot ready: dhcp (opening raw sockets on eth1), http (binding 0.0.0.0:8080)\n"
            ),
            "{r}"
        );
        let health = get(addr, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(handle.render().lines().any(|l| l == "netbootd_ready 0"));

        ::metrics::with_local_recorder(&recorder, || readiness.ready("http"));
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.ends_with("\r\n\r\nnot ready: dhcp (opening raw sockets on eth1)\n"),
            "{r}"
        );

        ::metrics::with_local_recorder(&recorder, || readiness.ready("dhcp"));
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("\r\n\r\nready\n"), "{r}");
        assert!(
            handle.render().lines().any(|l| l == "netbootd_ready 1"),
            "{}",
            handle.render()
        );

        ::metrics::with_local_recorder(&recorder, || readiness.stopping());
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.ends_with("\r\n\r\nnot ready: shutting down\n"), "{r}");
        let health = get(addr, "/healthz");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        assert!(handle.render().lines().any(|l| l == "netbootd_ready 0"));

        server.stop();
    }
}
