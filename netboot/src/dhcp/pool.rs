//! Placeholder (filled in by the core task).
