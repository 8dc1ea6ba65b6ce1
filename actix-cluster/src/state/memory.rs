//! The in-memory store: for tests, and for nodes that run without a data directory (state then
//! lives as long as the process).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    DEFAULT_MAX_VALUE_LEN, Expect, Record, StateError, StateStore, StoreFuture, Stored, check_key,
    check_write,
};

/// A [`StateStore`] in this process's memory. Cheap to clone: clones share the data.
#[derive(Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<String, Record>>>,
    max_value_len: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.lock().len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store that accepts values up to [`DEFAULT_MAX_VALUE_LEN`] bytes.
    pub fn new() -> Self {
        Self {
            records: Arc::default(),
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }

    /// Sets the largest value accepted, in bytes.
    pub fn max_value_len(mut self, limit: usize) -> Self {
        self.max_value_len = limit;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        &self,
        key: &str,
        data: Option<Vec<u8>>,
        expect: Expect,
        fence: u64,
    ) -> Result<u64, StateError> {
        check_write(key, data.as_deref(), self.max_value_len)?;
        let mut records = self.lock();
        let record = Record::apply(key, records.get(key), data, expect, fence)?;
        let version = record.version;
        records.insert(key.to_owned(), record);
        Ok(version)
    }
}

fn ready<T: Send + 'static>(r: Result<T, StateError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(r))
}

impl StateStore for MemoryStore {
    fn get(&self, key: &str) -> StoreFuture<Option<Stored>> {
        ready(check_key(key).map(|()| self.lock().get(key).and_then(Record::stored)))
    }

    fn put(&self, key: &str, data: Vec<u8>, expect: Expect, fence: u64) -> StoreFuture<u64> {
        let r = self.write(key, Some(data), expect, fence);
        super::count("memory", &r);
        ready(r)
    }

    fn delete(&self, key: &str, expect: Expect, fence: u64) -> StoreFuture<()> {
        let r = self.write(key, None, expect, fence);
        super::count("memory", &r);
        ready(r.map(|_| ()))
    }

    fn list(&self, prefix: &str) -> StoreFuture<Vec<String>> {
        let keys = self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, r)| r.data.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        ready(Ok(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        let limit = 4096;
        let store = MemoryStore::new().max_value_len(limit);
        if let Err(e) = crate::state::conformance(&store, limit).await {
            panic!("{e}");
        }
    }
}
