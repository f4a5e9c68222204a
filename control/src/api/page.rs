//! Pagination: `?page=&page_size=` on every list, answered as
//! `{"count": total, "page": n, "page_size": n, "results": [...]}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, FieldError};

/// Default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size (a full 10,000-machine cluster in one request).
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// The pagination query parameters.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page, 1–10000 (default 100).
    pub page_size: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Page number, from 1.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl PageRequest {
    /// SQL `LIMIT`.
    #[must_use]
    pub fn limit(self) -> i64 {
        i64::from(self.page_size)
    }

    /// SQL `OFFSET`.
    #[must_use]
    pub fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }
}

impl PageParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// `page` is 0 or `page_size` is outside 1–10000.
    pub fn request(self) -> Result<PageRequest, ApiError> {
        let mut errors = Vec::new();
        let page = self.page.unwrap_or(1);
        if page == 0 {
            errors.push(FieldError::new("page", "pages are numbered from 1"));
        }
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            errors.push(FieldError::new(
                "page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        if errors.is_empty() {
            Ok(PageRequest { page, page_size })
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// Total items matching the filters (all pages).
    pub count: i64,
    /// This page's number.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
    /// The items.
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// A page of `results` out of `count`.
    #[must_use]
    pub const fn new(request: PageRequest, count: i64, results: Vec<T>) -> Self {
        Self {
            count,
            page: request.page,
            page_size: request.page_size,
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let r = PageParams::default().request().unwrap();
        assert_eq!((r.page, r.page_size, r.offset()), (1, 100, 0));
        let r = PageParams {
            page: Some(3),
            page_size: Some(20),
        }
        .request()
        .unwrap();
        assert_eq!((r.limit(), r.offset()), (20, 40));
        assert!(
            PageParams {
                page: Some(0),
                page_size: None
            }
            .request()
            .is_err()
        );
        assert!(
            PageParams {
                page: None,
                page_size: Some(10_001)
            }
            .request()
            .is_err()
        );
    }
}
