//! Benchmarks and load generators (filled in by the bench task).
