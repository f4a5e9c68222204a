//! CONTRACT placeholder: store queries of `users` (written by its owner).
