//! How enums travel: tagged maps and plain strings, each with an `Unknown` catch-all.
//!
//! * Enums with data ([`EdgeMessage`](crate::EdgeMessage), [`ControlMessage`](crate::ControlMessage),
//!   [`EdgeEventKind`](crate::EdgeEventKind)) have only newtype variants around a struct and
//!   travel *internally tagged*: one CBOR map whose **first** entry is `"type": "<variant>"`,
//!   followed by the struct's fields (`{"type": "Heartbeat", "seq": 7, ...}`). Serialization is
//!   serde's `#[serde(tag = "type")]`, which writes the tag first. Deserialization is
//!   [`deserialize_tagged`]: it reads the tag, and a tag this build does not know becomes the
//!   enum's `Unknown { kind }` (the rest of the map is skipped without being buffered); a known
//!   tag decodes the remaining entries as that variant's struct, streaming, with unknown fields
//!   ignored. A map whose first key is not `"type"` is malformed.
//! * Enums without data ([`ServiceState`](crate::ServiceState), [`ErrorCode`](crate::ErrorCode))
//!   travel as the variant's name, a text string; a name this build does not know decodes as
//!   the enum's `Unknown` variant.
//!
//! `Unknown` variants never go back on the wire: encoding one fails (it carries no data to
//! send). The two macros below generate the per-enum code from one variant list; the
//! exhaustive `match` in the generated `kind()`/`as_str()` makes forgetting a variant a
//! compile error.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// The key of the tag entry of internally tagged enums.
pub(crate) const TAG: &str = "type";

/// An internally tagged enum with an `Unknown { kind }` catch-all (see the module docs).
pub(crate) trait Tagged: Sized {
    /// What the enum is, for error messages ("edge message").
    const WHAT: &'static str;
    /// Tags this build decodes.
    const KNOWN: &'static [&'static str];
    /// The catch-all for a tag this build does not know.
    fn unknown(kind: String) -> Self;
    /// Decode the variant named `kind` (one of [`Tagged::KNOWN`]) from the map's remaining
    /// entries.
    fn known<'de, D: Deserializer<'de>>(kind: &str, de: D) -> Result<Self, D::Error>;
}

/// Deserialize an internally tagged enum (see the module docs).
pub(crate) fn deserialize_tagged<'de, T: Tagged, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(TaggedVisitor::<T>(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (a map whose first entry is \"{TAG}\")", T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        match map.next_key::<String>()? {
            Some(key) if key == TAG => {}
            Some(key) => {
                return Err(de::Error::custom(format_args!(
                    "{}: the first entry must be \"{TAG}\", found {key:?}",
                    T::WHAT
                )));
            }
            None => return Err(de::Error::missing_field(TAG)),
        }
        let kind: String = map.next_value()?;
        if T::KNOWN.contains(&kind.as_str()) {
            T::known(&kind, MapAccessDeserializer::new(map))
        } else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(T::unknown(kind))
        }
    }
}

/// Implement [`Tagged`], `Deserialize` and `kind()` for an internally tagged enum whose
/// variants are all `Variant(Struct)` plus `Unknown { kind: String }`. The enum itself derives
/// `Serialize` with `#[serde(tag = "type")]` and `#[serde(skip_serializing)]` on `Unknown`.
macro_rules! tagged_enum {
    ($ty:ident, $what:literal, [$($variant:ident),+ $(,)?]) => {
        impl $ty {
            /// The `type` names of every variant this build decodes (all but `Unknown`), in
            /// declaration order.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The variant's name, as carried in the `type` entry on the wire (for logs and
            /// metrics); for `Unknown`, the name the newer peer sent.
            pub fn kind(&self) -> &str {
                match self {
                    $(Self::$variant(_) => stringify!($variant),)+
                    Self::Unknown { kind } => kind,
                }
            }

            /// Whether this is the `Unknown` catch-all: a kind from a newer peer, to be logged
            /// and ignored.
            pub fn is_unknown(&self) -> bool {
                matches!(self, Self::Unknown { .. })
            }
        }

        impl $crate::tagged::Tagged for $ty {
            const WHAT: &'static str = $what;
            const KNOWN: &'static [&'static str] = Self::KINDS;

            fn unknown(kind: String) -> Self {
                Self::Unknown { kind }
            }

            fn known<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                de: D,
            ) -> Result<Self, D::Error> {
                match kind {
                    $(stringify!($variant) => {
                        serde::Deserialize::deserialize(de).map(Self::$variant)
                    })+
                    other => Err(serde::de::Error::unknown_variant(
                        other,
                        <Self as $crate::tagged::Tagged>::KNOWN,
                    )),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::tagged::deserialize_tagged(deserializer)
            }
        }
    };
}

/// Define an enum of unit variants plus `Unknown`, travelling as the variant's name (a text
/// string); unknown names decode as `Unknown`. The `Unknown` variant's docs follow the braces:
/// `pub enum E { /// …\n A, } /// …\n Unknown;`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident {
            $($(#[$vmeta:meta])* $variant:ident,)+
        }
        $(#[$umeta:meta])*
        Unknown;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $ty {
            $($(#[$vmeta])* $variant,)+
            $(#[$umeta])* Unknown,
        }

        impl $ty {
            /// Every variant but `Unknown`.
            pub const KNOWN: &'static [Self] = &[$(Self::$variant),+];

            /// The name carried on the wire.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                    Self::Unknown => "Unknown",
                }
            }

            /// The variant named `name`, or `Unknown` when no variant has that name.
            pub fn from_name(name: &str) -> Self {
                match name {
                    $(stringify!($variant) => Self::$variant,)+
                    _ => Self::Unknown,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str($crate::tagged::NameVisitor(Self::from_name))
            }
        }
    };
}

pub(crate) use {string_enum, tagged_enum};

/// Visits a text string and maps it through a name → variant function.
pub(crate) struct NameVisitor<T>(pub(crate) fn(&str) -> T);

impl<T> Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a variant name (text)")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<T, E> {
        Ok((self.0)(name))
    }
}

/// `#[serde(with = "crate::tagged::der_bytes")]`: a `Vec<u8>` as a CBOR byte string (instead
/// of serde's default array of integers). Decoding also accepts an array of integers.
pub(crate) mod der_bytes {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serialize as a byte string.
    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Deserialize from a byte string (or an array of integers).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The declared length is untrusted: grow as elements arrive.
            let mut out = Vec::new();
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}
