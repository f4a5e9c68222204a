//! CONTRACT placeholder: routes of `machines` (written by its owner).

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    super::empty()
}
