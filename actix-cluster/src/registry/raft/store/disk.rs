//! The durable side: the redb file layout, reading it back at open, and the writer thread that
//! owns every write transaction.
//!
//! Why one writer thread: redb runs one write transaction at a time and each commit ends in an
//! fsync. Raft wants many small writes (one per proposal) and needs them in issue order. A
//! single thread that takes *everything queued* into one transaction gives both: order is the
//! queue's order, and N appends that arrive while a commit is in flight share the next fsync
//! (group commit). Callers never block on the disk: `append` returns once its entries are in
//! the in-memory mirror and queued; its callback fires after the commit.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle, ThreadId};

use openraft::storage::IOFlushed;
use redb::{Database, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::{Entry, LogId, Vote};
use crate::codec::{self, SerializationFormat};
use crate::registry::raft::TypeConfig;

/// The database file inside the data directory.
pub(super) const FILE_NAME: &str = "registry.redb";

/// Log entries: index -> bincode of the openraft entry.
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// Everything else, by name (see [`key`]).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

/// Keys of the [`META`] table.
mod key {
    /// Layout version of this file (`u32` little endian).
    pub(super) const FORMAT: &str = "format";
    /// This member's Raft node id (`u64` little endian), chosen at first open.
    pub(super) const RAFT_ID: &str = "raft_id";
    pub(super) const VOTE: &str = "vote";
    pub(super) const COMMITTED: &str = "committed";
    pub(super) const LAST_PURGED: &str = "last_purged";
    /// The current snapshot, in the same bytes the state machine hands to openraft.
    pub(super) const SNAPSHOT: &str = "snapshot";
}

/// Bumped when the layout or the encoding of a stored value changes incompatibly.
const FORMAT_VERSION: u32 = 1;

/// Most operations folded into one write transaction; bounds the transaction's size while
/// still amortizing the fsync over many proposals.
const MAX_BATCH_OPS: usize = 1024;

/// Operations queued ahead of the writer before `append` and friends wait for room: the
/// writer's backpressure on Raft when the disk is slower than the proposals.
const QUEUE_CAPACITY: usize = 4096;

/// Encodes a value stored in the database.
pub(super) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    codec::encode(SerializationFormat::Bincode, value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes a stored value; `what` names it in the error.
pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> io::Result<T> {
    codec::decode(SerializationFormat::Bincode, bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("registry storage: undecodable {what}: {e}"),
        )
    })
}

/// A stored value that the caller should see as a corrupt database.
fn corrupt(path: &Path, detail: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("registry database {} is corrupt: {detail}", path.display()),
    )
}

/// Maps a redb failure while opening `path` to an error an operator can act on.
fn open_error(path: &Path, e: redb::Error) -> io::Error {
    match e {
        redb::Error::DatabaseAlreadyOpen => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "registry database {} is locked: another process (or another node in this \
                 process) uses this data directory",
                path.display()
            ),
        ),
        redb::Error::Corrupted(detail) => corrupt(path, detail),
        redb::Error::UpgradeRequired(v) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "registry database {} has the old redb file format {v}; upgrade it with redb first",
                path.display()
            ),
        ),
        redb::Error::Io(io) => io::Error::new(
            io.kind(),
            format!("registry database {}: {io}", path.display()),
        ),
        other => io::Error::other(format!("registry database {}: {other}", path.display())),
    }
}

/// Everything the database held at open.
pub(super) struct Loaded {
    pub(super) raft_id: u64,
    pub(super) vote: Option<Vote>,
    pub(super) committed: Option<LogId>,
    pub(super) last_purged: Option<LogId>,
    pub(super) entries: BTreeMap<u64, Entry>,
    pub(super) snapshot: Option<Vec<u8>>,
}

/// Opens (creating if needed) the database in `dir`, reads it, and starts its writer thread.
pub(super) fn open(dir: &Path, new_raft_id: impl FnOnce() -> u64) -> io::Result<(Writer, Loaded)> {
    std::fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("registry data directory {}: {e}", dir.display()),
        )
    })?;
    let path = dir.join(FILE_NAME);
    let db = Database::create(&path).map_err(|e| open_error(&path, e.into()))?;
    let loaded = load(&db, &path, new_raft_id)?;
    let writer = Writer::spawn(db, path)?;
    Ok((writer, loaded))
}

/// Reads the whole database, in the write transaction that also stamps the format and the
/// Raft id on first open (so a crash between the two cannot leave an id-less database).
fn load(db: &Database, path: &Path, new_raft_id: impl FnOnce() -> u64) -> io::Result<Loaded> {
    let err = |e: redb::Error| open_error(path, e);
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    let loaded = {
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        let log = txn.open_table(LOG).map_err(|e| err(e.into()))?;
        let get = |meta: &redb::Table<'_, &str, &[u8]>, k: &str| -> io::Result<Option<Vec<u8>>> {
            Ok(meta
                .get(k)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value().to_vec()))
        };

        match get(&meta, key::FORMAT)? {
            None => {
                meta.insert(key::FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            Some(v) => {
                let version = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| corrupt(path, "malformed format version"))?;
                if version != FORMAT_VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "registry database {} has layout version {version}; this build reads \
                             version {FORMAT_VERSION}",
                            path.display()
                        ),
                    ));
                }
            }
        }

        let raft_id = match get(&meta, key::RAFT_ID)? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .ok()
                .filter(|id| *id != 0)
                .ok_or_else(|| corrupt(path, "malformed raft id"))?,
            None => {
                let id = new_raft_id();
                meta.insert(key::RAFT_ID, id.to_le_bytes().as_slice())
                    .map_err(|e| err(e.into()))?;
                id
            }
        };

        let decode_meta = |k: &str| -> io::Result<Option<LogId>> {
            get(&meta, k)?
                .map(|v| decode::<LogId>(k, &v).map_err(|e| corrupt(path, e)))
                .transpose()
        };
        let committed = decode_meta(key::COMMITTED)?;
        let last_purged = decode_meta(key::LAST_PURGED)?;
        let vote = get(&meta, key::VOTE)?
            .map(|v| decode::<Vote>("vote", &v).map_err(|e| corrupt(path, e)))
            .transpose()?;
        let snapshot = get(&meta, key::SNAPSHOT)?;

        let mut entries = BTreeMap::new();
        let mut expected = last_purged.as_ref().map(|l| l.index.saturating_add(1));
        for row in log.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let index = k.value();
            let entry: Entry = decode("log entry", v.value()).map_err(|e| corrupt(path, e))?;
            if entry.log_id.index != index {
                return Err(corrupt(
                    path,
                    format!("log entry {} stored under index {index}", entry.log_id),
                ));
            }
            // A hole would make Raft trust a log it does not have.
            if let Some(expected) = expected
                && index != expected
            {
                return Err(corrupt(
                    path,
                    format!("log has a hole: expected index {expected}, found {index}"),
                ));
            }
            expected = Some(index.saturating_add(1));
            entries.insert(index, entry);
        }

        Loaded {
            raft_id,
            vote,
            committed,
            last_purged,
            entries,
            snapshot,
        }
    };
    txn.commit().map_err(|e| err(e.into()))?;
    Ok(loaded)
}

/// Completion of a write someone waits for.
pub(super) type Done = oneshot::Sender<io::Result<()>>;

/// One write, in the order Raft issued it.
pub(super) enum Op {
    /// Log entries (index, encoded entry); `callback` reports them durable.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    Vote {
        bytes: Vec<u8>,
        done: Done,
    },
    /// `None` clears it.
    Committed {
        bytes: Option<Vec<u8>>,
    },
    /// Removes entries with index `>= from`.
    Truncate {
        from: u64,
    },
    /// Removes entries with index `<= upto` and records the purged log id.
    Purge {
        upto: u64,
        last_purged: Vec<u8>,
    },
    Snapshot {
        bytes: Vec<u8>,
        done: Done,
    },
}

impl Op {
    fn complete(self, result: &Result<(), String>) {
        let to_io = |r: &Result<(), String>| {
            r.clone()
                .map_err(|e| io::Error::other(format!("registry storage write failed: {e}")))
        };
        match self {
            Op::Append { callback, .. } => callback.io_completed(to_io(result)),
            // The waiter may have given up (its task was cancelled); nothing to tell then.
            Op::Vote { done, .. } | Op::Snapshot { done, .. } => {
                let _ = done.send(to_io(result));
            }
            Op::Committed { .. } | Op::Truncate { .. } | Op::Purge { .. } => {}
        }
    }
}

/// Handle to the writer thread. Clones share it; the thread flushes what is queued and exits,
/// closing the database (and its file lock), when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    shared: Arc<WriterShared>,
}

struct WriterShared {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    path: PathBuf,
    commits: Arc<AtomicU64>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.shared.path)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl Drop for WriterShared {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has committed what is queued. Joining
        // makes "dropped" mean "closed": reopening the same directory right after (a restart
        // in the same process, a test) must not find the file still locked.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread::current().id() != self.thread_id
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "registry storage writer thread panicked");
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "registry storage writer has stopped",
    )
}

impl Writer {
    fn spawn(db: Database, path: PathBuf) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        let thread = thread::Builder::new()
            .name("registry-store".into())
            .spawn({
                let path = path.clone();
                let commits = commits.clone();
                move || run(db, rx, path, commits)
            })?;
        Ok(Self {
            shared: Arc::new(WriterShared {
                tx: Some(tx),
                thread_id: thread.thread().id(),
                thread: Some(thread),
                path,
                commits,
            }),
        })
    }

    /// Queues `op` behind everything queued before it.
    pub(super) async fn send(&self, op: Op) -> io::Result<()> {
        let tx = self.shared.tx.as_ref().ok_or_else(closed)?;
        tx.send(op).await.map_err(|_| closed())
    }

    /// Queues the op built around a completion and waits until it is durable.
    pub(super) async fn call(&self, op: impl FnOnce(Done) -> Op) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(op(done)).await?;
        wait.await.map_err(|_| closed())?
    }

    /// Write transactions committed so far (each is one fsync).
    pub(super) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }
}

/// The writer thread: take what is queued, commit it as one transaction, report, repeat.
fn run(db: Database, mut rx: mpsc::Receiver<Op>, path: PathBuf, commits: Arc<AtomicU64>) {
    // After a failed commit the file and the in-memory mirror disagree; every later write
    // fails too rather than build on a state nobody can vouch for. Raft stops on the error.
    let mut failed: Option<String> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH_OPS);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => commit(&db, &batch).map_err(|e| e.to_string()),
        };
        match &result {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(ops = batch.len(), "registry storage committed");
            }
            Err(e) if failed.is_none() => {
                tracing::error!(path = %path.display(), error = %e, "registry storage commit failed");
                failed = Some(e.clone());
            }
            Err(_) => {}
        }
        for op in batch.drain(..) {
            op.complete(&result);
        }
    }
    tracing::debug!(path = %path.display(), "registry storage closed");
}

fn commit(db: &Database, batch: &[Op]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                Op::Vote { bytes, .. } => {
                    meta.insert(key::VOTE, bytes.as_slice())?;
                }
                Op::Committed { bytes: Some(bytes) } => {
                    meta.insert(key::COMMITTED, bytes.as_slice())?;
                }
                Op::Committed { bytes: None } => {
                    meta.remove(key::COMMITTED)?;
                }
                Op::Truncate { from } => {
                    log.retain_in(*from.., |_, _| false)?;
                }
                Op::Purge { upto, last_purged } => {
                    meta.insert(key::LAST_PURGED, last_purged.as_slice())?;
                    log.retain_in(..=*upto, |_, _| false)?;
                }
                Op::Snapshot { bytes, .. } => {
                    meta.insert(key::SNAPSHOT, bytes.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
