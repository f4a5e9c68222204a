//! CONTRACT placeholder: store queries of `machines` (written by its owner).
