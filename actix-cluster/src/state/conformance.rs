//! The contract every [`StateStore`] keeps, as one check that runs against any backend.

use super::{Expect, StateError, StateStore, Version};

/// Runs the [`StateStore`] contract against `store`, which must be empty: versions, expected
/// versions, fencing (writes and deletes), tombstones, prefix listing, key and value limits
/// (`max_value_len` is the store's configured limit), and concurrent conditional writes.
/// Returns the first broken rule.
///
/// Every backend of this crate runs it in its tests; run it on your own backend too.
pub async fn conformance(store: &dyn StateStore, max_value_len: usize) -> Result<(), String> {
    macro_rules! check {
        ($cond:expr, $($why:tt)+) => {
            if !$cond {
                return Err(format!($($why)+));
            }
        };
    }
    let s = store;

    // Versions start at 1 and grow by one per write.
    check!(
        s.get("a/1").await == Ok(None),
        "an unwritten key is not None"
    );
    let v1 = s.put("a/1", b"one".to_vec(), Expect::Absent, 1).await;
    check!(v1 == Ok(1), "first write: {v1:?}, expected version 1");
    let got = s.get("a/1").await.map_err(|e| e.to_string())?;
    check!(
        got.as_ref()
            .is_some_and(|g| g.data == b"one" && g.version == 1 && g.fence == 1),
        "read back {got:?}"
    );

    // Expected versions.
    let again = s.put("a/1", b"x".to_vec(), Expect::Absent, 1).await;
    check!(
        matches!(
            again,
            Err(StateError::Conflict {
                actual: Version(Some(1)),
                ..
            })
        ),
        "Absent on a written key: {again:?}"
    );
    let stale = s.put("a/1", b"x".to_vec(), Expect::Version(7), 1).await;
    check!(
        matches!(stale, Err(StateError::Conflict { .. })),
        "a wrong version: {stale:?}"
    );
    let v2 = s.put("a/1", b"two".to_vec(), Expect::Version(1), 1).await;
    check!(v2 == Ok(2), "a matching version: {v2:?}");
    let v3 = s.put("a/1", b"three".to_vec(), Expect::Any, 1).await;
    check!(v3 == Ok(3), "Any: {v3:?}");

    // Fencing: a newer token wins; an older one is refused for good.
    let v4 = s.put("a/1", b"new".to_vec(), Expect::Version(3), 5).await;
    check!(v4 == Ok(4), "a newer token: {v4:?}");
    let old = s.put("a/1", b"old".to_vec(), Expect::Any, 4).await;
    check!(
        matches!(
            old,
            Err(StateError::Fenced {
                fence: 4,
                current: 5,
                ..
            })
        ),
        "an older token: {old:?}"
    );
    let got = s.get("a/1").await.map_err(|e| e.to_string())?;
    check!(
        got.as_ref()
            .is_some_and(|g| g.data == b"new" && g.fence == 5),
        "a fenced write changed the value: {got:?}"
    );
    let same = s.put("a/1", b"same".to_vec(), Expect::Any, 5).await;
    check!(same == Ok(5), "the same token again: {same:?}");

    // Deletes leave a tombstone that keeps the version and the token.
    let old_delete = s.delete("a/1", Expect::Any, 1).await;
    check!(
        matches!(old_delete, Err(StateError::Fenced { .. })),
        "a delete with an older token: {old_delete:?}"
    );
    let wrong_delete = s.delete("a/1", Expect::Version(1), 5).await;
    check!(
        matches!(wrong_delete, Err(StateError::Conflict { .. })),
        "a delete of a wrong version: {wrong_delete:?}"
    );
    check!(
        s.delete("a/1", Expect::Version(5), 6).await == Ok(()),
        "a delete"
    );
    check!(
        s.get("a/1").await == Ok(None),
        "a deleted key reads as None"
    );
    let resurrect = s.put("a/1", b"zombie".to_vec(), Expect::Absent, 5).await;
    check!(
        matches!(resurrect, Err(StateError::Fenced { current: 6, .. })),
        "an older activation brought a deleted key back: {resurrect:?}"
    );
    let reborn = s.put("a/1", b"again".to_vec(), Expect::Absent, 6).await;
    check!(
        reborn == Ok(7),
        "a write after a delete continues the versions: {reborn:?}"
    );
    check!(
        s.delete("never", Expect::Absent, 1).await == Ok(()),
        "deleting an absent key with Absent"
    );
    let absent = s.delete("never/2", Expect::Version(1), 1).await;
    check!(
        matches!(
            absent,
            Err(StateError::Conflict {
                actual: Version(None),
                ..
            })
        ),
        "deleting an absent key with a version: {absent:?}"
    );

    // Listing: values only, by prefix, in byte order.
    for k in ["a/3", "a/2", "ab", "b/1", "a"] {
        s.put(k, vec![1], Expect::Any, 1)
            .await
            .map_err(|e| e.to_string())?;
    }
    s.delete("a/3", Expect::Any, 1)
        .await
        .map_err(|e| e.to_string())?;
    let listed = s.list("a/").await.map_err(|e| e.to_string())?;
    check!(listed == ["a/1", "a/2"], "list(\"a/\") = {listed:?}");
    let all = s.list("").await.map_err(|e| e.to_string())?;
    check!(
        all == ["a", "a/1", "a/2", "ab", "b/1"],
        "list(\"\") = {all:?}"
    );

    // Limits.
    check!(
        matches!(
            s.put("", vec![], Expect::Any, 1).await,
            Err(StateError::InvalidKey { .. })
        ),
        "an empty key"
    );
    let long = "k".repeat(super::MAX_KEY_LEN + 1);
    check!(
        matches!(s.get(&long).await, Err(StateError::InvalidKey { .. })),
        "a key longer than MAX_KEY_LEN"
    );
    let big = s
        .put("big", vec![0; max_value_len + 1], Expect::Any, 1)
        .await;
    check!(
        matches!(big, Err(StateError::TooLarge { .. })),
        "a value above the limit: {big:?}"
    );
    check!(s.get("big").await == Ok(None), "a refused value was stored");
    let edge = s.put("big", vec![7; max_value_len], Expect::Any, 1).await;
    check!(edge == Ok(1), "a value at the limit: {edge:?}");

    // Concurrent conditional writes from one version: exactly one wins.
    s.put("race", vec![0], Expect::Absent, 1)
        .await
        .map_err(|e| e.to_string())?;
    let writes = (0..16u8).map(|i| s.put("race", vec![i], Expect::Version(1), 1));
    let results = futures::future::join_all(writes).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    check!(
        won == 1,
        "{won} of 16 writes from version 1 succeeded: {results:?}"
    );
    check!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StateError::Conflict { .. }))),
        "a losing write failed otherwise: {results:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStore, StoreFuture, Stored};

    /// A backend that forgets fencing: it must fail the check.
    struct Unfenced(MemoryStore);

    impl StateStore for Unfenced {
        fn get(&self, key: &str) -> StoreFuture<Option<Stored>> {
            self.0.get(key)
        }
        fn put(&self, key: &str, data: Vec<u8>, expect: Expect, _: u64) -> StoreFuture<u64> {
            self.0.put(key, data, expect, 0)
        }
        fn delete(&self, key: &str, expect: Expect, _: u64) -> StoreFuture<()> {
            self.0.delete(key, expect, 0)
        }
        fn list(&self, prefix: &str) -> StoreFuture<Vec<String>> {
            self.0.list(prefix)
        }
    }

    #[tokio::test]
    async fn a_backend_without_fencing_fails_the_check() {
        let broken = Unfenced(MemoryStore::new());
        let verdict = conformance(&broken, 1024).await;
        assert!(
            verdict
                .as_ref()
                .is_err_and(|e| e.contains("fence") || e.contains("token")),
            "{verdict:?}"
        );
    }
}
