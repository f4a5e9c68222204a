//! The state every handler gets: the store, the authentication keys and settings, and the
//! HTTP metrics.

use std::sync::Arc;

use crate::auth::{AuthSettings, AuthState, Keys};
use crate::db::{Db, StoreError};

/// Shared application state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Signing keys and token lifetimes.
    pub auth: Arc<AuthState>,
}

impl AppState {
    /// State over a migrated `db`: loads (or creates) the signing keys.
    ///
    /// # Errors
    /// The store failed.
    pub async fn new(db: Db, settings: AuthSettings) -> Result<Self, StoreError> {
        let keys = Keys::load_or_create(&db).await?;
        Ok(Self {
            db,
            auth: Arc::new(AuthState { keys, settings }),
        })
    }
}
