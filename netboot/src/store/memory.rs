//! In-memory lease store for tests and benches (filled in by the store task).
