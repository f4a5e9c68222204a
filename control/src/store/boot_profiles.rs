//! CONTRACT placeholder: store queries of `boot_profiles` (written by its owner).
