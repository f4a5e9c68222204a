//! CONTRACT placeholder: store queries of `events` (written by its owner).
