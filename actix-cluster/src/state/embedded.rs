//! The embedded store: one redb file in the node's data directory, no server to run.
//!
//! One writer thread owns the database, as the registry's storage does and for the same
//! reasons: redb runs one write transaction at a time and each commit ends in an fsync. The
//! thread takes everything queued (up to [`MAX_BATCH`]) into one transaction, so the saves of
//! many actors that arrive while a commit is in flight share the next fsync (group commit),
//! and no actor thread ever waits on the disk. Operations are applied in queue order, each
//! checked against what the ones before it in the batch wrote; answers go out after the
//! commit, so nothing is reported that a crash could still undo.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{
    DEFAULT_MAX_VALUE_LEN, Expect, Record, StateError, StateStore, StoreFuture, Stored, check_key,
    check_write,
};

/// The database file inside the data directory.
pub(crate) const FILE_NAME: &str = "state.redb";

/// key -> [`Record::encode`].
const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("actor_state");

/// Most operations in one transaction.
const MAX_BATCH: usize = 1024;

/// Operations queued ahead of the writer before callers wait for room.
const QUEUE_CAPACITY: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, StateError>>;

enum Op {
    Get {
        key: String,
        reply: Reply<Option<Stored>>,
    },
    Write {
        key: String,
        data: Option<Vec<u8>>,
        expect: Expect,
        fence: u64,
        reply: Reply<u64>,
    },
    List {
        prefix: String,
        reply: Reply<Vec<String>>,
    },
}

/// A [`StateStore`] in a redb file. Cheap to clone: clones share the database and its writer
/// thread, which ends (after committing what is queued) when the last clone and the last
/// pending operation are gone.
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
    max_value_len: usize,
}

struct Shared {
    tx: Option<mpsc::Sender<Op>>,
    /// Write transactions committed (each one fsync).
    commits: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has committed what is queued; joining
        // makes "dropped" mean "closed", so the directory can be opened again at once.
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.thread().id() != thread::current().id()
            && t.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "state store writer thread panicked");
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StateError {
    match e.into() {
        redb::Error::Corrupted(detail) => StateError::Corrupt(detail),
        other => StateError::Unavailable(other.to_string()),
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store in directory `dir` (file `state.redb`) and
    /// starts its writer thread. Fails if another store has the file open.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(e.kind(), format!("state directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        let opened = |e: redb::Error| match e {
            redb::Error::DatabaseAlreadyOpen => io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "state store {} is locked: another process (or another node in this \
                     process) uses this data directory",
                    path.display()
                ),
            ),
            other => io::Error::other(format!("state store {}: {other}", path.display())),
        };
        let db = Database::create(&path).map_err(|e| opened(e.into()))?;
        // The table exists from the start: readers need not tell "no table" from "no key".
        let txn = db.begin_write().map_err(|e| opened(e.into()))?;
        txn.open_table(STATE).map_err(|e| opened(e.into()))?;
        txn.commit().map_err(|e| opened(e.into()))?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        let thread = thread::Builder::new().name("state-store".into()).spawn({
            let path = path.clone();
            let commits = Arc::clone(&commits);
            move || run(&db, rx, &path, &commits)
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                tx: Some(tx),
                commits,
                thread: Some(thread),
                path,
            }),
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        })
    }

    /// Sets the largest value accepted, in bytes.
    pub fn max_value_len(mut self, limit: usize) -> Self {
        self.max_value_len = limit;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Write transactions committed so far, each one fsync: writes divided by this is how
    /// many saves each commit carried (group commit).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// A write (`Some` data) or a delete, counted by outcome.
    fn write(
        &self,
        key: &str,
        data: Option<Vec<u8>>,
        expect: Expect,
        fence: u64,
    ) -> StoreFuture<u64> {
        let check = check_write(key, data.as_deref(), self.max_value_len);
        let key = key.to_owned();
        let write = self.call(check, move |reply| Op::Write {
            key,
            data,
            expect,
            fence,
            reply,
        });
        Box::pin(async move {
            let r = write.await;
            super::count("redb", &r);
            r
        })
    }

    /// Queues the op built around a reply channel and waits for its answer. The future holds
    /// the store, so the writer cannot close under a pending operation.
    fn call<T: Send + 'static>(
        &self,
        check: Result<(), StateError>,
        op: impl FnOnce(Reply<T>) -> Op + Send + 'static,
    ) -> StoreFuture<T> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            check?;
            let tx = shared.tx.as_ref().ok_or(StateError::Closed)?;
            let (reply, answer) = oneshot::channel();
            tx.send(op(reply)).await.map_err(|_| StateError::Closed)?;
            answer.await.map_err(|_| StateError::Closed)?
        })
    }
}

impl StateStore for RedbStore {
    fn get(&self, key: &str) -> StoreFuture<Option<Stored>> {
        let key = key.to_owned();
        self.call(check_key(&key), |reply| Op::Get { key, reply })
    }

    fn put(&self, key: &str, data: Vec<u8>, expect: Expect, fence: u64) -> StoreFuture<u64> {
        self.write(key, Some(data), expect, fence)
    }

    fn delete(&self, key: &str, expect: Expect, fence: u64) -> StoreFuture<()> {
        let write = self.write(key, None, expect, fence);
        Box::pin(async move { write.await.map(|_| ()) })
    }

    fn list(&self, prefix: &str) -> StoreFuture<Vec<String>> {
        let prefix = prefix.to_owned();
        self.call(Ok(()), |reply| Op::List { prefix, reply })
    }
}

/// The writer thread: take what is queued, run it in one transaction, answer, repeat.
fn run(db: &Database, mut rx: mpsc::Receiver<Op>, path: &Path, commits: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let writes = batch.iter().any(|op| matches!(op, Op::Write { .. }));
        let outcome = if writes {
            let outcome = write_batch(db, &mut batch);
            if matches!(outcome, Ok(true)) {
                commits.fetch_add(1, Ordering::Relaxed);
                crate::metrics::state_commit();
            }
            outcome.map(|_| ())
        } else {
            read_batch(db, &mut batch)
        };
        if let Err(e) = outcome {
            tracing::warn!(path = %path.display(), error = %e, "state store transaction failed");
            for op in batch.drain(..) {
                fail(op, &e);
            }
        }
    }
    tracing::debug!(path = %path.display(), "state store closed");
}

fn fail(op: Op, e: &StateError) {
    match op {
        Op::Get { reply, .. } => drop(reply.send(Err(e.clone()))),
        Op::Write { reply, .. } => drop(reply.send(Err(e.clone()))),
        Op::List { reply, .. } => drop(reply.send(Err(e.clone()))),
    }
}

/// What one op of a batch answers, sent once the batch's outcome is known.
enum Answer {
    Get(Reply<Option<Stored>>, Result<Option<Stored>, StateError>),
    Write(Reply<u64>, Result<u64, StateError>),
    List(Reply<Vec<String>>, Result<Vec<String>, StateError>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Get(r, v) => drop(r.send(v)),
            Answer::Write(r, v) => drop(r.send(v)),
            Answer::List(r, v) => drop(r.send(v)),
        }
    }

    /// Answers `e` instead of what the op found.
    fn fail(self, e: &StateError) {
        match self {
            Answer::Get(r, _) => drop(r.send(Err(e.clone()))),
            Answer::Write(r, _) => drop(r.send(Err(e.clone()))),
            Answer::List(r, _) => drop(r.send(Err(e.clone()))),
        }
    }
}

fn record<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    key: &str,
) -> Result<Option<Record>, StateError> {
    table
        .get(key)
        .map_err(unavailable)?
        .map(|v| Record::decode(key, v.value()))
        .transpose()
}

fn listed<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    prefix: &str,
) -> Result<Vec<String>, StateError> {
    let mut keys = Vec::new();
    for row in table.range(prefix..).map_err(unavailable)? {
        let (k, v) = row.map_err(unavailable)?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        if Record::decode(key, v.value())?.data.is_some() {
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// A batch with writes: every op in one write transaction, answered after the commit. `Ok`:
/// every op was answered; whether the commit succeeded.
fn write_batch(db: &Database, batch: &mut Vec<Op>) -> Result<bool, StateError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(STATE).map_err(unavailable)?;
        for op in batch.drain(..) {
            answers.push(match op {
                Op::Get { key, reply } => {
                    let v = record(&table, &key).map(|r| r.and_then(|r| r.stored()));
                    Answer::Get(reply, v)
                }
                Op::List { prefix, reply } => Answer::List(reply, listed(&table, &prefix)),
                Op::Write {
                    key,
                    data,
                    expect,
                    fence,
                    reply,
                } => {
                    let v = record(&table, &key)
                        .and_then(|current| {
                            Record::apply(&key, current.as_ref(), data, expect, fence)
                        })
                        .and_then(|r| {
                            table
                                .insert(key.as_str(), r.encode().as_slice())
                                .map_err(unavailable)?;
                            Ok(r.version)
                        });
                    Answer::Write(reply, v)
                }
            });
        }
    }
    match txn.commit() {
        Ok(()) => {
            answers.into_iter().for_each(Answer::send);
            Ok(true)
        }
        Err(e) => {
            // Nothing of the batch is stored; what it read may not hold either.
            let e = unavailable(e);
            answers.into_iter().for_each(|a| a.fail(&e));
            Ok(false)
        }
    }
}

/// A batch of reads: one read transaction, no commit.
fn read_batch(db: &Database, batch: &mut Vec<Op>) -> Result<(), StateError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(STATE).map_err(unavailable)?;
    for op in batch.drain(..) {
        match op {
            Op::Get { key, reply } => {
                let v = record(&table, &key).map(|r| r.and_then(|r| r.stored()));
                drop(reply.send(v));
            }
            Op::List { prefix, reply } => drop(reply.send(listed(&table, &prefix))),
            // `run` sends batches with writes to `write_batch`; refused rather than lost.
            write @ Op::Write { .. } => fail(
                write,
                &StateError::Unavailable("internal: a write in a read batch".into()),
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_redb_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 64 << 10;
        let store = RedbStore::open(dir.path()).unwrap().max_value_len(limit);
        if let Err(e) = crate::state::conformance(&store, limit).await {
            panic!("{e}");
        }
    }

    #[tokio::test]
    async fn what_was_saved_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store
                .put("p/42", b"score=10".to_vec(), Expect::Absent, 3)
                .await
                .unwrap();
            store.put("p/43", vec![1], Expect::Absent, 3).await.unwrap();
            store.delete("p/43", Expect::Any, 4).await.unwrap();
        }
        // Dropping the last handle closed the file: it opens again at once.
        let store = RedbStore::open(dir.path()).unwrap();
        let got = store.get("p/42").await.unwrap().unwrap();
        assert_eq!(
            (got.data.as_slice(), got.version, got.fence),
            (&b"score=10"[..], 1, 3)
        );
        assert_eq!(store.list("p/").await.unwrap(), ["p/42"]);
        // The tombstone kept its token.
        assert!(matches!(
            store.put("p/43", vec![2], Expect::Absent, 3).await,
            Err(StateError::Fenced { current: 4, .. })
        ));
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStore::open(dir.path()).unwrap();
        let second = RedbStore::open(dir.path()).map(|_| ());
        assert!(
            matches!(&second, Err(e) if e.kind() == io::ErrorKind::ResourceBusy),
            "{second:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_saves_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let saves = (0..512u32).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(
                        &format!("k/{i:04}"),
                        i.to_le_bytes().to_vec(),
                        Expect::Absent,
                        1,
                    )
                    .await
            })
        });
        for s in futures::future::join_all(saves).await {
            assert_eq!(s.unwrap(), Ok(1));
        }
        assert!(store.commits() >= 1 && store.commits() <= 512);
        assert_eq!(store.list("k/").await.unwrap().len(), 512);
    }
}
