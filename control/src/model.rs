//! The enumerations of the data model (DESIGN.md "Data model"), shared by the store, the REST
//! API and (later) the UI and O2ims. Each is stored and sent as its upper-case (or, for worker and
//! lease states, lower-case) name, parsed case-insensitively, and rejects anything else with a
//! message that lists the accepted values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value that is not one of an enumeration's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of {expected}")]
pub struct UnknownVariant {
    /// What was given.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The accepted names, comma separated (for error messages).
            pub const EXPECTED: &'static str = concat_names!($($text),+);

            /// The stored and serialised name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($text) { return Ok(Self::$variant); })+
                Err(UnknownVariant { value: s.to_owned(), expected: Self::EXPECTED })
            }
        }
    };
}

macro_rules! concat_names {
    ($first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

string_enum! {
    /// A cluster's operational status.
    ClusterStatus {
        /// Running normally.
        Operational = "OPERATIONAL",
        /// Running with reduced capacity.
        Degraded = "DEGRADED",
        /// Not serving.
        Critical = "CRITICAL",
        /// Under planned maintenance.
        Maintenance = "MAINTENANCE",
        /// Adding or removing machines.
        Scaling = "SCALING",
        /// Being upgraded.
        Upgrading = "UPGRADING",
        /// Not known (the default).
        Unknown = "UNKNOWN",
    }
}

string_enum! {
    /// Health of a cluster or a machine.
    Health {
        /// All checks pass.
        Healthy = "HEALTHY",
        /// Something needs attention.
        Warning = "WARNING",
        /// Failing.
        Critical = "CRITICAL",
        /// Not known (the default).
        Unknown = "UNKNOWN",
    }
}

string_enum! {
    /// A machine's role in its cluster.
    MachineRole {
        /// Control-plane node.
        Master = "MASTER",
        /// Worker node.
        Worker = "WORKER",
        /// Storage node.
        Storage = "STORAGE",
        /// Gateway node.
        Gateway = "GATEWAY",
    }
}

string_enum! {
    /// The operating system installed on a machine.
    OsType {
        /// Linux.
        Linux = "LINUX",
        /// Windows.
        Windows = "WINDOWS",
        /// macOS.
        Macos = "MACOS",
    }
}

string_enum! {
    /// A machine's lifecycle status.
    MachineStatus {
        /// Provisioned and running (it phoned home).
        Active = "ACTIVE",
        /// Registered, not running (the default).
        Inactive = "INACTIVE",
        /// Under maintenance.
        Maintenance = "MAINTENANCE",
        /// Provisioning or operation failed.
        Error = "ERROR",
        /// Being provisioned.
        Deploying = "DEPLOYING",
        /// Being upgraded.
        Upgrading = "UPGRADING",
        /// Not reachable.
        Unreachable = "UNREACHABLE",
    }
}

string_enum! {
    /// A user's role.
    UserRole {
        /// Reads and writes everything.
        Admin = "admin",
        /// Reads everything, writes nothing.
        Viewer = "viewer",
    }
}

string_enum! {
    /// An edge daemon's status as the control plane sees it.
    WorkerStatus {
        /// Heartbeats arrive, services are fine.
        Active = "active",
        /// No heartbeat for three intervals (the default before the first one).
        Inactive = "inactive",
        /// A service reported an error.
        Error = "error",
    }
}

string_enum! {
    /// A DHCP lease's binding state.
    BindingState {
        /// In use.
        Active = "active",
        /// Ran out.
        Expired = "expired",
        /// Given back by the client.
        Released = "released",
        /// Declined or otherwise unusable.
        Abandoned = "abandoned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_case_insensitively() {
        for v in MachineStatus::ALL {
            assert_eq!(v.as_str().parse::<MachineStatus>(), Ok(*v));
            assert_eq!(v.as_str().to_lowercase().parse::<MachineStatus>(), Ok(*v));
        }
        assert_eq!(" viewer ".parse::<UserRole>(), Ok(UserRole::Viewer));
        assert_eq!(
            serde_json::to_string(&ClusterStatus::Operational).unwrap(),
            "\"OPERATIONAL\""
        );
    }

    #[test]
    fn unknown_names_list_the_accepted_ones() {
        let e = "BOSS".parse::<MachineRole>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`BOSS` is not one of MASTER, WORKER, STORAGE, GATEWAY"
        );
    }
}
