//! Store queries, one module per resource. Functions take the [`crate::db::Db`] (reads) or a
//! transaction (writes), speak the model types, and return [`crate::db::StoreError`].

pub mod boot_profiles;
pub mod clusters;
pub mod events;
pub mod ippools;
pub mod machines;
pub mod site_config;
pub mod sites;
pub mod users;
pub mod workers;
