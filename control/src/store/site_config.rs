//! CONTRACT placeholder: store queries of `site_config` (written by its owner).
