//! CONTRACT placeholder: store queries of `ippools` (written by its owner).
