//! CONTRACT placeholder: store queries of `clusters` (written by its owner).
