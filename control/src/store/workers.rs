//! CONTRACT placeholder: store queries of `workers` (written by its owner).
