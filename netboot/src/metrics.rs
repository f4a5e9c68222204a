//! Prometheus exporter (filled in by the driver task).
