//! Prefixed, time-sortable identifiers (`dst_01J…`).
//!
//! Each kind of resource has its own id type, so a `DestinationId` cannot be passed where an
//! `EventId` is expected. The body is a ULID: 48 bits of milliseconds then 80 random bits, so ids
//! sort by creation time, which keyset pagination relies on.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use ulid::Ulid;

/// A kind of resource that has a prefixed id.
pub trait IdKind: Send + Sync + 'static {
    /// The prefix including the underscore, e.g. `"dst_"`.
    const PREFIX: &'static str;
    /// The resource name used in errors, e.g. `"destination"`.
    const NAME: &'static str;
}

/// A prefixed id of kind `K`.
pub struct Id<K: IdKind> {
    ulid: Ulid,
    kind: PhantomData<K>,
}

impl<K: IdKind> Id<K> {
    /// A new id for a resource created now.
    pub fn generate() -> Self {
        Self::from_ulid(Ulid::new())
    }

    pub fn from_ulid(ulid: Ulid) -> Self {
        Self { ulid, kind: PhantomData }
    }

    pub fn ulid(&self) -> Ulid {
        self.ulid
    }
}

impl<K: IdKind> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: IdKind> Copy for Id<K> {}
impl<K: IdKind> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.ulid == other.ulid
    }
}
impl<K: IdKind> Eq for Id<K> {}
impl<K: IdKind> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ulid.hash(state)
    }
}
impl<K: IdKind> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: IdKind> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ulid.cmp(&other.ulid)
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", K::PREFIX, self.ulid)
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not an id of the expected kind. Shown to API users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must start with `{expected}`")]
    WrongPrefix { expected: &'static str },
    #[error("is not a valid id (expected `{expected}` followed by 26 base32 characters)")]
    Malformed { expected: &'static str },
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let body = s.strip_prefix(K::PREFIX).ok_or(IdError::WrongPrefix { expected: K::PREFIX })?;
        // ULID parsing is case-insensitive; we require the canonical upper case so that an id
        // has exactly one spelling and string comparison in SQL agrees with ours.
        if body.len() != 26 || body.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(IdError::Malformed { expected: K::PREFIX });
        }
        let ulid = Ulid::from_string(body).map_err(|_| IdError::Malformed { expected: K::PREFIX })?;
        Ok(Self::from_ulid(ulid))
    }
}

impl<K: IdKind> serde::Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, K: IdKind> serde::Deserialize<'de> for Id<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! id_kinds {
    ($($kind:ident, $alias:ident, $prefix:literal, $name:literal;)*) => {
        $(
            #[doc = concat!("Marker for ", $name, " ids (`", $prefix, "…`).")]
            pub enum $kind {}
            impl IdKind for $kind {
                const PREFIX: &'static str = $prefix;
                const NAME: &'static str = $name;
            }
            #[doc = concat!("The id of a ", $name, ".")]
            pub type $alias = Id<$kind>;
        )*
    };
}

id_kinds! {
    ProjectKind, ProjectId, "prj_", "project";
    ApiKeyKind, ApiKeyId, "key_", "api key";
    SourceKind, SourceId, "src_", "source";
    DestinationKind, DestinationId, "dst_", "destination";
    SubscriptionKind, SubscriptionId, "sub_", "subscription";
    TemplateKind, TemplateId, "tpl_", "template";
    EventKind, EventId, "evt_", "event";
    DeliveryKind, DeliveryId, "dlv_", "delivery";
    AttemptKind, AttemptId, "att_", "attempt";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_by_time() {
        let a = DestinationId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = DestinationId::generate();
        assert!(a.to_string().starts_with("dst_"));
        assert_eq!(a.to_string().len(), 30);
        assert_eq!(a.to_string().parse::<DestinationId>().unwrap(), a);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn rejects_other_kinds_and_garbage() {
        let src = SourceId::generate().to_string();
        assert_eq!(src.parse::<DestinationId>(), Err(IdError::WrongPrefix { expected: "dst_" }));
        assert_eq!("".parse::<DestinationId>(), Err(IdError::Empty));
        assert!(matches!("dst_123".parse::<DestinationId>(), Err(IdError::Malformed { .. })));
        let lower = format!("dst_{}", Ulid::new().to_string().to_lowercase());
        assert!(matches!(lower.parse::<DestinationId>(), Err(IdError::Malformed { .. })));
    }
}
