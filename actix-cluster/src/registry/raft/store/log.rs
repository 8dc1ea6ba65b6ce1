//! The Raft log store: vote, log entries, committed and purged log ids.
//!
//! Both storage modes keep the whole live log in memory (the *mirror*): reads never touch the
//! disk or wait for the writer, and entries are readable the moment `append` returns, as
//! openraft requires. The durable mode additionally queues every change, in issue order, to
//! the writer thread ([`super::disk`]). The mirror holds only entries not yet purged, and
//! openraft purges behind each snapshot, so its size follows the snapshot interval.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};

use super::disk::{self, Op, Writer};
use super::{Entry, LogId, Vote};
use crate::registry::raft::TypeConfig;

/// What the log store holds, after every write issued so far (durable or not yet).
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) vote: Option<Vote>,
    pub(super) committed: Option<LogId>,
    pub(super) last_purged: Option<LogId>,
    pub(super) entries: BTreeMap<u64, Entry>,
}

impl Mirror {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(self.last_purged)
    }
}

fn lock(m: &Mutex<Mirror>) -> MutexGuard<'_, Mirror> {
    // A panic elsewhere while holding the lock cannot leave the map half-updated in a way
    // that matters more than stopping Raft would; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn describe(m: &Mutex<Mirror>, f: &mut fmt::DebugStruct<'_, '_>) {
    let m = lock(m);
    f.field("entries", &m.entries.len())
        .field("last_log_id", &m.last_log_id().map(|l| l.to_string()))
        .field(
            "last_purged",
            &m.last_purged.as_ref().map(|l| l.to_string()),
        );
}

/// The log store openraft writes through. One type for both storage modes: without a writer
/// it is memory only.
#[derive(Clone)]
pub(crate) struct LogStore {
    mirror: Arc<Mutex<Mirror>>,
    writer: Option<Writer>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LogStore");
        d.field("durable", &self.writer.is_some());
        describe(&self.mirror, &mut d);
        d.finish()
    }
}

/// A read handle on the log store, for openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogReader {
    mirror: Arc<Mutex<Mirror>>,
}

impl fmt::Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LogReader");
        describe(&self.mirror, &mut d);
        d.finish()
    }
}

impl LogStore {
    pub(super) fn memory() -> Self {
        Self {
            mirror: Arc::default(),
            writer: None,
        }
    }

    pub(super) fn durable(mirror: Mirror, writer: Writer) -> Self {
        Self {
            mirror: Arc::new(Mutex::new(mirror)),
            writer: Some(writer),
        }
    }

    /// The vote and last log id as stored (or being stored), for registry recovery.
    pub(crate) fn state(&self) -> (Option<Vote>, Option<LogId>) {
        let m = lock(&self.mirror);
        (m.vote, m.last_log_id())
    }

    /// Write transactions committed by the durable store (`None` in memory).
    #[cfg(test)]
    pub(super) fn commits(&self) -> Option<u64> {
        self.writer.as_ref().map(Writer::commits)
    }
}

/// The entries of `range`, copied under one lock so the read is atomic.
fn read_range<RB: RangeBounds<u64>>(mirror: &Mutex<Mirror>, range: RB) -> Vec<Entry> {
    // `BTreeMap::range` panics on a reversed range; such a range simply holds nothing.
    let start = match range.start_bound() {
        Bound::Included(s) => Some(*s),
        Bound::Excluded(s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(*e),
        Bound::Excluded(e) => e.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    };
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    if start > end {
        return Vec::new();
    }
    lock(mirror)
        .entries
        .range(start..=end)
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(read_range(&self.mirror, range))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(lock(&self.mirror).vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let m = lock(&self.mirror);
        Ok(LogState {
            last_purged_log_id: m.last_purged,
            last_log_id: m.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            mirror: self.mirror.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        if let Some(writer) = &self.writer {
            let bytes = disk::encode(vote)?;
            // Raft may not act on a vote (grant it, count itself) before it is on disk.
            writer.call(|done| Op::Vote { bytes, done }).await?;
        }
        lock(&self.mirror).vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = match (&self.writer, &committed) {
            (Some(_), Some(c)) => Some(disk::encode(c)?),
            _ => None,
        };
        lock(&self.mirror).committed = committed;
        // Not waited for: a committed id lost in a crash only means re-applying less at
        // restart (openraft then catches up from the leader). Queued behind the entries it
        // covers, so the saved id never points past the durable log.
        if let Some(writer) = &self.writer {
            writer.send(Op::Committed { bytes }).await?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(lock(&self.mirror).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(writer) = &self.writer else {
            lock(&self.mirror)
                .entries
                .extend(entries.into_iter().map(|e| (e.log_id.index, e)));
            callback.io_completed(Ok(()));
            return Ok(());
        };
        // Encoded before the mirror changes, so a failure leaves the store as it was.
        let encoded = entries
            .iter()
            .map(|e| Ok((e.log_id.index, disk::encode(e)?)))
            .collect::<io::Result<Vec<_>>>()?;
        lock(&self.mirror)
            .entries
            .extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        writer
            .send(Op::Append {
                entries: encoded,
                callback,
            })
            .await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index.saturating_add(1));
        drop(lock(&self.mirror).entries.split_off(&from));
        // Not waited for: until it is durable the removed entries are merely uncommitted
        // ones a restart would bring back and Raft would truncate again. Anything appended
        // after it is queued behind it, so no acknowledged entry can sit on the stale tail.
        if let Some(writer) = &self.writer {
            writer.send(Op::Truncate { from }).await?;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = match &self.writer {
            Some(_) => Some(disk::encode(&log_id)?),
            None => None,
        };
        let upto = log_id.index;
        {
            let mut m = lock(&self.mirror);
            if m.last_purged.as_ref() >= Some(&log_id) {
                return Ok(());
            }
            m.entries = m.entries.split_off(&upto.saturating_add(1));
            m.last_purged = Some(log_id);
        }
        // Not waited for: purged entries that come back after a crash are covered by the
        // snapshot (stored before openraft purges) and are purged again.
        if let (Some(writer), Some(last_purged)) = (&self.writer, bytes) {
            writer.send(Op::Purge { upto, last_purged }).await?;
        }
        Ok(())
    }
}
