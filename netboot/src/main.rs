//! `netbootd` (filled in by the driver task).
fn main() {}
