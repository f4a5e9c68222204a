//! CONTRACT placeholder: store queries of `sites` (written by its owner).
