//! Drivers: the only code that touches the OS (filled in by the driver task).
