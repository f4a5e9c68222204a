//! The state every handler gets: the store, the authentication keys and settings, the login
//! throttle and the HTTP metrics.

use std::sync::Arc;

use crate::auth::{AuthSettings, AuthState, Keys};
use crate::db::{Db, StoreError};
use crate::metrics::Metrics;
use crate::ratelimit::{Clock, LoginGuard, LoginLimits, SystemClock};

/// Shared application state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Signing keys and token lifetimes.
    pub auth: Arc<AuthState>,
    /// Failed-login counters of `POST /api/token`.
    pub login: Arc<LoginGuard>,
    /// This app's Prometheus registry.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// State over a migrated `db` with the default login limits and the system clock: loads
    /// (or creates) the signing keys.
    ///
    /// # Errors
    /// The store failed.
    pub async fn new(db: Db, settings: AuthSettings) -> Result<Self, StoreError> {
        Self::with_options(db, settings, LoginLimits::default(), Arc::new(SystemClock)).await
    }

    /// State with explicit login limits and time source.
    ///
    /// # Errors
    /// The store failed.
    pub async fn with_options(
        db: Db,
        settings: AuthSettings,
        limits: LoginLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let keys = Keys::load_or_create(&db).await?;
        Ok(Self {
            db,
            auth: Arc::new(AuthState {
                keys: crate::auth::rotation::KeyRing::new(keys),
                settings,
            }),
            login: Arc::new(LoginGuard::new(limits, clock.clone())),
            metrics: Arc::new(Metrics::new(clock)),
        })
    }
}
