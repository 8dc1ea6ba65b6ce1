//! Persisted actor state: the [`StateStore`] trait and its backends.
//!
//! A store maps keys to versioned byte strings. Two checks make it safe to share between the
//! activations of one identity over time, the newest of which may run while an older one is
//! cut off in a partition:
//!
//! - **Expected version** ([`Expect`]): a write names the version it read (or that the key is
//!   absent) and fails with [`StateError::Conflict`] if the key moved on; a lost update is
//!   impossible.
//! - **Fencing**: every write carries a monotonic token, the writing activation's registry
//!   version. The store keeps the highest token that wrote each key and refuses a write with a
//!   lower one ([`StateError::Fenced`]), so an activation that lost its name can never
//!   overwrite its successor's state, even with a correct expected version. A delete keeps the
//!   key's token (a tombstone): an old activation cannot bring a deleted key back either.
//!
//! Backends: [`MemoryStore`] (tests, and nodes without a data directory), [`RedbStore`]
//! (embedded, one file in the node's data directory, group commit on a writer thread) and,
//! with the feature `redis`, `RedisStore` (a Redis server the nodes share).
//! [`conformance`] checks any backend, a user's own included, against the trait's contract.
//!
//! Keys are UTF-8, 1 to [`MAX_KEY_LEN`] bytes; `list(prefix)` returns them in byte order.
//!
//! Values are bytes; [`encode_state`] and [`decode_state`] turn a [`PersistentState`] type
//! into them and back, with its format and schema version in a small header, so that state
//! saved by an older build is migrated (or refused with both versions named) when the type
//! changes.

use std::future::Future;
use std::pin::Pin;

mod conformance;
mod embedded;
mod memory;
#[cfg(feature = "redis")]
mod redis_store;
mod typed;

pub use conformance::conformance;
pub use embedded::RedbStore;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use typed::{PersistentState, decode_state, encode_state};

/// Longest key a store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Largest value a store accepts unless configured otherwise, in bytes.
pub const DEFAULT_MAX_VALUE_LEN: usize = 8 << 20;

/// What a store operation returns: owned and `Send`, so that it can be awaited anywhere (an
/// actor's context, a tokio task) and outlive the borrow of the store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'static>>;

/// A stored value with its version and the fencing token of its last writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bytes last written.
    pub data: Vec<u8>,
    /// Bumped by every write and delete of the key, starting at 1; never reused, even after a
    /// delete.
    pub version: u64,
    /// The highest fencing token that wrote (or deleted) the key.
    pub fence: u64,
}

/// The condition a write puts on the key's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key holds no value (never written, or deleted).
    Absent,
    /// The key holds a value of exactly this version.
    Version(u64),
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key's version is not the expected one: another write came first. Nothing changed;
    /// read again and retry, or give up.
    #[error("state {key:?}: expected {expected:?}, but the key is at {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// What the write expected.
        expected: Expect,
        /// The key's version (`absent` if it holds no value).
        actual: Version,
    },
    /// A writer with a newer fencing token has written this key: the caller is an older
    /// activation that lost its identity and must stop. Nothing changed.
    #[error(
        "state {key:?}: fenced: written with token {current}, this writer holds {fence} (a newer \
         activation owns this state)"
    )]
    Fenced {
        /// The key.
        key: String,
        /// The caller's token.
        fence: u64,
        /// The highest token that wrote the key.
        current: u64,
    },
    /// The key is empty or longer than [`MAX_KEY_LEN`]. Nothing changed.
    #[error("state key {key:?}: {reason}")]
    InvalidKey {
        /// The key (cut to 64 characters).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value is larger than the store accepts. Nothing changed.
    #[error("state {key:?}: a value of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The store's limit.
        limit: usize,
    },
    /// The backend failed (I/O, a lost connection, a full disk). A write may or may not have
    /// been applied: read the key to find out.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The backend holds data it cannot read: the store is damaged or was written by an
    /// incompatible version.
    #[error("state store corrupt: {0}")]
    Corrupt(String),
    /// The store was closed (its node is shutting down). Nothing changed.
    #[error("state store closed")]
    Closed,
    /// The state could not be serialized in its format. Nothing was written.
    #[error("state could not be encoded: {0}")]
    Encode(String),
    /// The stored state does not decode as the type (its header is fine): the type changed
    /// without raising [`PersistentState::SCHEMA_VERSION`], or the value is damaged.
    #[error("state could not be decoded: {0}")]
    Decode(String),
    /// The state was stored with another schema version and
    /// [`PersistentState::migrate`] did not read it.
    #[error(
        "state {key:?} was stored with schema version {stored}, this build reads version \
         {current}: {reason}"
    )]
    Schema {
        /// The key.
        key: String,
        /// The schema version in the stored header.
        stored: u32,
        /// The type's [`PersistentState::SCHEMA_VERSION`].
        current: u32,
        /// Why the migration refused.
        reason: String,
    },
}

/// A key's version as a conflict reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub Option<u64>);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "version {v}"),
            None => f.write_str("absent"),
        }
    }
}

/// Where actors keep the state that outlives an activation.
///
/// Operations on one key are linearizable. The futures are `'static`: a backend copies what it
/// needs from the arguments before returning.
pub trait StateStore: Send + Sync + 'static {
    /// The key's value, `None` if it holds none (never written, or deleted).
    fn get(&self, key: &str) -> StoreFuture<Option<Stored>>;

    /// Writes `data` if the key's version matches `expect` and no writer with a token above
    /// `fence` has written it; returns the new version.
    fn put(&self, key: &str, data: Vec<u8>, expect: Expect, fence: u64) -> StoreFuture<u64>;

    /// Deletes the key's value under the same conditions as [`put`](Self::put). The key's
    /// version and token stay (a tombstone); deleting a key without a value succeeds when
    /// `expect` allows it.
    fn delete(&self, key: &str, expect: Expect, fence: u64) -> StoreFuture<()>;

    /// The keys that hold a value and start with `prefix`, in byte order.
    fn list(&self, prefix: &str) -> StoreFuture<Vec<String>>;
}

/// Counts a write's or delete's outcome under `backend` (`actix_cluster_state_writes_total`).
pub(crate) fn count<T>(backend: &'static str, result: &Result<T, StateError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(StateError::Conflict { .. }) => "conflict",
        Err(StateError::Fenced { .. }) => "fenced",
        Err(StateError::InvalidKey { .. } | StateError::TooLarge { .. }) => "refused",
        Err(_) => "error",
    };
    crate::metrics::state_write(backend, outcome);
}

/// Checks a write of `data` (`None`: a delete) to `key` against the limits every backend
/// applies, with `max_value_len` the backend's value limit.
pub(crate) fn check_write(
    key: &str,
    data: Option<&[u8]>,
    max_value_len: usize,
) -> Result<(), StateError> {
    check_key(key)?;
    match data {
        Some(d) if d.len() > max_value_len => Err(StateError::TooLarge {
            key: key.to_owned(),
            size: d.len(),
            limit: max_value_len,
        }),
        _ => Ok(()),
    }
}

/// Checks `key` against the limits every backend applies.
pub(crate) fn check_key(key: &str) -> Result<(), StateError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 1024 bytes"
    } else {
        return Ok(());
    };
    Err(StateError::InvalidKey {
        key: key.chars().take(64).collect(),
        reason,
    })
}

/// One key's record, as every backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) version: u64,
    pub(crate) fence: u64,
    /// `None`: deleted (a tombstone that keeps the version and the token).
    pub(crate) data: Option<Vec<u8>>,
}

impl Record {
    /// Applies a write (`Some` data) or a delete (`None`) to `current` if its conditions hold;
    /// the record to store, or why not. Shared by the backends so that they agree exactly.
    pub(crate) fn apply(
        key: &str,
        current: Option<&Record>,
        data: Option<Vec<u8>>,
        expect: Expect,
        fence: u64,
    ) -> Result<Record, StateError> {
        let (version, held, live) = match current {
            Some(r) => (r.version, r.fence, r.data.is_some()),
            None => (0, 0, false),
        };
        if fence < held {
            return Err(StateError::Fenced {
                key: key.to_owned(),
                fence,
                current: held,
            });
        }
        let actual = live.then_some(version);
        let ok = match expect {
            Expect::Any => true,
            Expect::Absent => actual.is_none(),
            Expect::Version(v) => actual == Some(v),
        };
        if !ok {
            return Err(StateError::Conflict {
                key: key.to_owned(),
                expected: expect,
                actual: Version(actual),
            });
        }
        Ok(Record {
            version: version + 1,
            fence,
            data,
        })
    }

    /// The record as a reader sees it.
    pub(crate) fn stored(&self) -> Option<Stored> {
        self.data.as_ref().map(|data| Stored {
            data: data.clone(),
            version: self.version,
            fence: self.fence,
        })
    }

    /// Encoded for a byte-oriented backend: version and token (little endian), a tag byte
    /// (1: a value follows, 0: a tombstone), then the value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = self.data.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(17 + len);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.fence.to_le_bytes());
        match &self.data {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(d);
            }
            None => out.push(0),
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s bytes; the length is checked before every read.
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Record, StateError> {
        let corrupt = |what: &str| StateError::Corrupt(format!("key {key:?}: {what}"));
        if bytes.len() < 17 {
            return Err(corrupt("record shorter than its header"));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let data = match bytes[16] {
            1 => Some(bytes[17..].to_vec()),
            0 if bytes.len() == 17 => None,
            0 => return Err(corrupt("tombstone with a value")),
            _ => return Err(corrupt("unknown record tag")),
        };
        Ok(Record {
            version: word(0),
            fence: word(8),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a").is_ok());
        assert!(matches!(
            check_key(""),
            Err(StateError::InvalidKey {
                reason: "empty",
                ..
            })
        ));
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn damaged_records_are_corrupt_not_a_panic() {
        for bytes in [
            &[][..],
            &[0; 16],
            &[0; 17][..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
        ] {
            assert!(matches!(
                Record::decode("k", bytes),
                Err(StateError::Corrupt(_))
            ));
        }
        let mut tomb = Record {
            version: 1,
            fence: 1,
            data: None,
        }
        .encode();
        tomb.push(9);
        assert!(Record::decode("k", &tomb).is_err());
    }

    proptest! {
        #[test]
        fn records_round_trip(version: u64, fence: u64, data in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
            let r = Record { version, fence, data };
            prop_assert_eq!(Record::decode("k", &r.encode()).unwrap(), r);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode("k", &bytes);
        }
    }
}
