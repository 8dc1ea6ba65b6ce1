//! The Raft state machine: committed entries applied to the shared [`Replica`], and snapshots
//! of it.
//!
//! The name table itself is never written to disk entry by entry. The durable mode stores the
//! current snapshot; at restart openraft installs it and re-applies the log from there up to
//! the saved committed id, which rebuilds the replica exactly.

use std::fmt;
use std::io;
use std::sync::Arc;

use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::disk::{self, Op, Writer};
use super::{LogId, Membership, Snapshot, SnapshotMeta};
use crate::registry::raft::TypeConfig;
use crate::registry::replica::Replica;
use crate::registry::state::Names;

/// Bumped when [`SnapshotData`]'s layout changes incompatibly. Snapshots travel between
/// members, so a mismatch is refused instead of misread. 2: the name table carries the
/// supervised names after the slots; 3: and the virtual actors' reminders after those.
const SNAPSHOT_FORMAT: u32 = 3;

/// Snapshot bytes, as built here and sent to other members: bincode of this struct.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    last_applied: &'a Option<LogId>,
    membership: &'a Membership,
    names: &'a Names,
}

/// The owned twin of [`SnapshotRef`], for decoding.
#[derive(Deserialize)]
pub(super) struct SnapshotData {
    format: u32,
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: Membership,
    pub(super) names: Names,
}

/// Decodes snapshot bytes; they may come from another member, so nothing is trusted.
pub(super) fn decode_snapshot(bytes: &[u8]) -> io::Result<SnapshotData> {
    let data: SnapshotData = disk::decode("snapshot", bytes)?;
    if data.format != SNAPSHOT_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "registry snapshot has format {}; this build reads format {SNAPSHOT_FORMAT}",
                data.format
            ),
        ));
    }
    Ok(data)
}

/// The snapshot openraft gets from [`StateMachine::get_current_snapshot`].
#[derive(Clone)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta,
    pub(super) data: Vec<u8>,
}

impl StoredSnapshot {
    /// Reads back a stored snapshot: its meta is in its own bytes.
    pub(super) fn from_bytes(data: Vec<u8>) -> io::Result<Self> {
        let decoded = decode_snapshot(&data)?;
        Ok(Self {
            meta: SnapshotMeta {
                last_log_id: decoded.last_applied,
                last_membership: decoded.membership,
            },
            data,
        })
    }
}

/// The current snapshot, shared with snapshot builders running on their own task. The lock is
/// held across the disk write so that two snapshots cannot be stored out of order.
type Current = Arc<Mutex<Option<StoredSnapshot>>>;

/// What a state machine has applied: kept beside it so that a Raft restarted in this process
/// (registry recovery) resumes where the old one stopped instead of re-applying onto a
/// replica that already holds the entries.
type Progress = Arc<std::sync::Mutex<(Option<LogId>, Membership)>>;

/// The state machine openraft applies committed entries to.
pub(crate) struct StateMachine {
    replica: Arc<Replica>,
    last_applied: Option<LogId>,
    membership: Membership,
    current: Current,
    writer: Option<Writer>,
    progress: Progress,
    /// Dropped with the state machine: [`Resume::take`] waits for that.
    _alive: Arc<()>,
}

/// What it takes to build the state machine again after its Raft was shut down, from where
/// it stopped.
#[derive(Clone)]
pub(crate) struct Resume {
    replica: Arc<Replica>,
    current: Current,
    writer: Option<Writer>,
    progress: Progress,
    alive: std::sync::Weak<()>,
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume").finish_non_exhaustive()
    }
}

impl Resume {
    /// The state machine again, once the old one is gone (its Raft shut down and dropped
    /// it); `None` if it is still alive after `within`.
    pub(crate) async fn take(&self, within: std::time::Duration) -> Option<StateMachine> {
        let deadline = tokio::time::Instant::now() + within;
        while self.alive.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (last_applied, membership) = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let alive = Arc::new(());
        Some(StateMachine {
            replica: Arc::clone(&self.replica),
            last_applied,
            membership,
            current: Arc::clone(&self.current),
            writer: self.writer.clone(),
            progress: Arc::clone(&self.progress),
            _alive: alive,
        })
    }
}

impl fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachine")
            .field("durable", &self.writer.is_some())
            .field(
                "last_applied",
                &self.last_applied.as_ref().map(|l| l.to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// A state machine over `replica` that has applied nothing yet; `snapshot` is the one the
    /// durable store held, for openraft to install at startup.
    pub(super) fn new(
        replica: Arc<Replica>,
        snapshot: Option<StoredSnapshot>,
        writer: Option<Writer>,
    ) -> Self {
        Self {
            replica,
            last_applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(snapshot)),
            writer,
            progress: Progress::default(),
            _alive: Arc::new(()),
        }
    }

    /// A handle to build this state machine again after its Raft is gone.
    pub(crate) fn resume(&self) -> Resume {
        Resume {
            replica: Arc::clone(&self.replica),
            current: Arc::clone(&self.current),
            writer: self.writer.clone(),
            progress: Arc::clone(&self.progress),
            alive: Arc::downgrade(&self._alive),
        }
    }

    fn record_progress(&self) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) =
            (self.last_applied, self.membership.clone());
    }
}

/// A snapshot in the making: a copy of the state taken when openraft asked for the builder,
/// so applying further entries meanwhile does not change it.
pub(crate) struct SnapshotBuilder {
    last_applied: Option<LogId>,
    membership: Membership,
    names: Names,
    current: Current,
    writer: Option<Writer>,
}

impl fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field(
                "last_applied",
                &self.last_applied.as_ref().map(|l| l.to_string()),
            )
            .field("names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = disk::encode(&SnapshotRef {
            format: SNAPSHOT_FORMAT,
            last_applied: &self.last_applied,
            membership: &self.membership,
            names: &self.names,
        })?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
        };
        let mut current = self.current.lock().await;
        // A newer snapshot may have been installed from the leader while this one was being
        // built; keep that one.
        let superseded = current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > meta.last_log_id);
        if !superseded {
            // Stored before returning: openraft purges the log behind a built snapshot.
            if let Some(writer) = &self.writer {
                let bytes = data.clone();
                writer.call(|done| Op::Snapshot { bytes, done }).await?;
            }
            *current = Some(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            });
        }
        tracing::debug!(
            last_applied = %meta.last_log_id.as_ref().map(|l| l.to_string()).unwrap_or_default(),
            names = self.names.len(),
            bytes = data.len(),
            superseded,
            "registry snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let index = entry.log_id.index;
            let outcome = match &entry.payload {
                EntryPayload::Normal(cmd) => self.replica.apply(index, Some(cmd)),
                EntryPayload::Blank => self.replica.apply(index, None),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.replica.apply(index, None)
                }
            };
            self.last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responder.send(outcome);
            }
        }
        self.record_progress();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Taken on the state machine's task, between two applies: the copy is consistent.
        SnapshotBuilder {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            names: self.replica.clone_names(),
            current: self.current.clone(),
            writer: self.writer.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let decoded = decode_snapshot(&snapshot)?;
        if decoded.last_applied != meta.last_log_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "registry snapshot holds state up to {:?} but its meta says {:?}",
                    decoded.last_applied.map(|l| l.to_string()),
                    meta.last_log_id.as_ref().map(|l| l.to_string()),
                ),
            ));
        }
        let mut current = self.current.lock().await;
        // At restart openraft installs the snapshot it just read from here: already stored.
        let stored = current.as_ref().is_some_and(|c| &c.meta == meta);
        if !stored && let Some(writer) = &self.writer {
            let bytes = snapshot.clone();
            writer.call(|done| Op::Snapshot { bytes, done }).await?;
        }
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        self.replica.install(decoded.names, index);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.record_progress();
        *current = Some(StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        });
        tracing::info!(
            last_applied = %meta.last_log_id.as_ref().map(|l| l.to_string()).unwrap_or_default(),
            "registry snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.current.lock().await.as_ref().map(|c| Snapshot {
            meta: c.meta.clone(),
            snapshot: c.data.clone(),
        }))
    }
}
