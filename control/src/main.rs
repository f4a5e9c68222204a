//! `ims-control`: the control plane's binary. CONTRACT placeholder: the command line (`serve`,
//! `user …`) is written by its owner.
#![forbid(unsafe_code)]

fn main() {}
