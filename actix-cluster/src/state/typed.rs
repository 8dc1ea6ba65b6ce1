//! Typed state on top of a store's bytes: the serialization format and a schema version travel
//! with the value, so that state written by an older build of a type can still be read (or is
//! refused with a clear error) after the type changed.
//!
//! Stored form: `b"acs"`, a layout byte (1), the format's wire id, the schema version (`u32`
//! little endian), then the payload in that format. Reading takes the format from the header,
//! so a type may change its format without losing what was saved.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StateError;
use crate::codec::{self, SerializationFormat};

const MAGIC: &[u8; 3] = b"acs";
const LAYOUT: u8 = 1;
const HEADER_LEN: usize = 9;

/// A type saved in a [`StateStore`](super::StateStore).
///
/// ```
/// use actix_cluster::state::{PersistentState, decode_state, encode_state};
/// use actix_cluster::SerializationFormat;
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Score { points: u64 }
///
/// impl PersistentState for Score {}
///
/// let bytes = encode_state(&Score { points: 7 }, SerializationFormat::Bincode).unwrap();
/// assert_eq!(decode_state::<Score>("player/42", &bytes).unwrap(), Score { points: 7 });
/// ```
pub trait PersistentState: Serialize + DeserializeOwned {
    /// The version of the stored form. Raise it when a change of the type cannot read what
    /// the previous version wrote, and teach [`migrate`](Self::migrate) the old form.
    const SCHEMA_VERSION: u32 = 1;

    /// Reads state stored with an older (or another) schema version `from`, in `format`. The
    /// default refuses; an implementation typically decodes the old type and converts it.
    fn migrate(from: u32, format: SerializationFormat, payload: &[u8]) -> Result<Self, String> {
        let _ = (format, payload);
        Err(format!(
            "no migration from schema version {from} to {}",
            Self::SCHEMA_VERSION
        ))
    }
}

/// Encodes `state` with its schema version, in `format`.
pub fn encode_state<T: PersistentState>(
    state: &T,
    format: SerializationFormat,
) -> Result<Vec<u8>, StateError> {
    let payload = codec::encode(format, state)
        .map_err(|e| StateError::Encode(format!("{}: {e}", std::any::type_name::<T>())))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(LAYOUT);
    out.push(format.to_wire());
    out.extend_from_slice(&T::SCHEMA_VERSION.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes state that [`encode_state`] wrote (for `key`, named in errors); state of another
/// schema version goes through [`PersistentState::migrate`].
pub fn decode_state<T: PersistentState>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    let corrupt = |what: &str| StateError::Corrupt(format!("state {key:?}: {what}"));
    if bytes.len() < HEADER_LEN || &bytes[..3] != MAGIC {
        return Err(corrupt("not actor state (no header)"));
    }
    if bytes[3] != LAYOUT {
        return Err(corrupt("unknown state layout"));
    }
    let format =
        SerializationFormat::from_wire(bytes[4]).ok_or_else(|| corrupt("unknown format"))?;
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[5..HEADER_LEN]);
    let version = u32::from_le_bytes(v);
    let payload = &bytes[HEADER_LEN..];
    if version == T::SCHEMA_VERSION {
        codec::decode(format, payload).map_err(|e| {
            StateError::Decode(format!(
                "state {key:?} as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    } else {
        T::migrate(version, format, payload).map_err(|reason| StateError::Schema {
            key: key.to_owned(),
            stored: version,
            current: T::SCHEMA_VERSION,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct V1 {
        points: u64,
    }
    impl PersistentState for V1 {}

    /// The next version: a new field, and a migration from the first.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct V2 {
        points: u64,
        level: u32,
    }
    impl PersistentState for V2 {
        const SCHEMA_VERSION: u32 = 2;
        fn migrate(from: u32, format: SerializationFormat, payload: &[u8]) -> Result<Self, String> {
            match from {
                1 => {
                    let old: V1 = codec::decode(format, payload).map_err(|e| e.to_string())?;
                    Ok(V2 {
                        points: old.points,
                        level: 1,
                    })
                }
                other => Err(format!("unknown schema version {other}")),
            }
        }
    }

    /// Like `V2` but without a migration.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Strict {
        points: u64,
        level: u32,
    }
    impl PersistentState for Strict {
        const SCHEMA_VERSION: u32 = 2;
    }

    #[test]
    fn state_round_trips_in_every_format() {
        for format in [
            SerializationFormat::Bincode,
            SerializationFormat::MessagePack,
            SerializationFormat::Json,
        ] {
            let bytes = encode_state(&V1 { points: 42 }, format).unwrap();
            assert_eq!(decode_state::<V1>("k", &bytes).unwrap(), V1 { points: 42 });
        }
    }

    #[test]
    fn older_state_is_migrated_or_refused_with_both_versions() {
        let old = encode_state(&V1 { points: 9 }, SerializationFormat::MessagePack).unwrap();
        assert_eq!(
            decode_state::<V2>("p/1", &old).unwrap(),
            V2 {
                points: 9,
                level: 1
            }
        );
        match decode_state::<Strict>("p/1", &old) {
            Err(StateError::Schema {
                stored: 1,
                current: 2,
                key,
                ..
            }) => assert_eq!(key, "p/1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_or_damaged_bytes_are_typed_errors() {
        let good = encode_state(&V1 { points: 1 }, SerializationFormat::Bincode).unwrap();
        let mut bad_layout = good.clone();
        bad_layout[3] = 9;
        let mut bad_format = good.clone();
        bad_format[4] = 0xee;
        for bytes in [&b"{}"[..], &b"acs"[..], &bad_layout, &bad_format] {
            assert!(
                matches!(decode_state::<V1>("k", bytes), Err(StateError::Corrupt(_))),
                "{bytes:?}"
            );
        }
        let truncated = &good[..HEADER_LEN];
        assert!(matches!(
            decode_state::<V1>("k", truncated),
            Err(StateError::Decode(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_state::<V2>("k", &bytes);
        }
    }
}
