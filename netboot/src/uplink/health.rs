//! How the edge's services are doing, for heartbeats: each service's state and last error.
//!
//! Services (and `main`) report into a shared [`ServiceHealth`]: [`ServiceHealth::set_state`]
//! when they start or are turned off, [`ServiceHealth::error`] when something fails (a lease
//! commit, say), [`ServiceHealth::recovered`] when it works again. The uplink reads
//! [`ServiceHealth::statuses`] for each heartbeat and [`ServiceHealth::take_new_errors`] to
//! record each error once as a `ServiceError` event. Times are passed in (UNIX milliseconds).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ims_proto::{ServiceState, ServiceStatus};

/// Errors kept for [`ServiceHealth::take_new_errors`] before the oldest are dropped.
const MAX_PENDING_ERRORS: usize = 64;

/// An error a service reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceErrorReport {
    /// The service (`dhcp`, `tftp`, `http`, `uplink`).
    pub service: String,
    /// What went wrong.
    pub message: String,
    /// When (UNIX milliseconds).
    pub at_ms: i64,
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, ServiceStatus>,
    pending: Vec<ServiceErrorReport>,
}

/// Shared service states. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct ServiceHealth {
    inner: Arc<Mutex<Inner>>,
}

impl ServiceHealth {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Set `service`'s state (keeping its last error).
    pub fn set_state(&self, service: &str, state: ServiceState) {
        self.lock()
            .services
            .entry(service.to_owned())
            .or_default()
            .state = state;
    }

    /// `service` failed: state [`ServiceState::Error`], `message` its last error. The same
    /// message again (a failure repeating) is not queued again for
    /// [`ServiceHealth::take_new_errors`] until the service recovered in between.
    pub fn error(&self, service: &str, message: impl Into<String>, at_ms: i64) {
        let message = message.into();
        let mut inner = self.lock();
        let status = inner.services.entry(service.to_owned()).or_default();
        let repeat = status.state == ServiceState::Error
            && status.last_error.as_deref() == Some(message.as_str());
        status.state = ServiceState::Error;
        status.last_error = Some(message.clone());
        status.last_error_at_ms = Some(at_ms);
        if !repeat {
            if inner.pending.len() >= MAX_PENDING_ERRORS {
                inner.pending.remove(0);
            }
            inner.pending.push(ServiceErrorReport {
                service: service.to_owned(),
                message,
                at_ms,
            });
        }
    }

    /// `service` works again after an error: back to [`ServiceState::Running`] (the last error
    /// stays on record).
    pub fn recovered(&self, service: &str) {
        let mut inner = self.lock();
        if let Some(status) = inner.services.get_mut(service) {
            if status.state == ServiceState::Error {
                status.state = ServiceState::Running;
            }
        }
    }

    /// Every service's status, by name.
    pub fn statuses(&self) -> BTreeMap<String, ServiceStatus> {
        self.lock().services.clone()
    }

    /// Errors reported since the last call, oldest first.
    pub fn take_new_errors(&self) -> Vec<ServiceErrorReport> {
        std::mem::take(&mut self.lock().pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_recorded_once_per_failure_and_recovery_keeps_the_last() {
        let health = ServiceHealth::new();
        health.set_state("dhcp", ServiceState::Running);
        health.set_state("tftp", ServiceState::Disabled);
        health.error("dhcp", "disk full", 10);
        health.error("dhcp", "disk full", 11);
        let statuses = health.statuses();
        assert_eq!(statuses["dhcp"].state, ServiceState::Error);
        assert_eq!(statuses["dhcp"].last_error_at_ms, Some(11));
        assert_eq!(statuses["tftp"].state, ServiceState::Disabled);
        let errors = health.take_new_errors();
        assert_eq!(errors.len(), 1, "a repeat is not a new error");
        assert_eq!(errors[0].message, "disk full");
        assert!(health.take_new_errors().is_empty());
        health.recovered("dhcp");
        let dhcp = &health.statuses()["dhcp"];
        assert_eq!(dhcp.state, ServiceState::Running);
        assert_eq!(dhcp.last_error.as_deref(), Some("disk full"));
        health.error("dhcp", "disk full", 20);
        assert_eq!(health.take_new_errors().len(), 1, "failing again is news");
        for i in 0..100 {
            health.error("http", format!("e{i}"), i);
        }
        let errors = health.take_new_errors();
        assert_eq!(errors.len(), MAX_PENDING_ERRORS);
        assert_eq!(errors.last().map(|e| e.message.as_str()), Some("e99"));
    }
}
