//! LMDB implementation of the lease store (filled in by the store task).
