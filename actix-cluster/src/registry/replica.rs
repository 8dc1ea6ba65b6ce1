//! This node's copy of the name table, shared by the Raft state machine (which writes it) and
//! the lookup path (which reads it without going through Raft or an actor).

use std::sync::{Arc, Mutex, RwLock};

use actix::Recipient;
use tokio::sync::watch;

use super::state::{Command, Names, Outcome};
use super::types::{NameEntry, NameEvent};

struct Watcher {
    prefix: String,
    recipient: Recipient<NameEvent>,
}

/// The local replica.
pub(crate) struct Replica {
    names: RwLock<Names>,
    /// Last log index applied; `watch` so waiters (linearizable reads, claim waits) can block
    /// until it passes a value.
    applied: watch::Sender<u64>,
    watchers: Mutex<Vec<Watcher>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replica {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            names: RwLock::new(Names::default()),
            applied: watch::Sender::new(0),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Reads the table under the read lock.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Names) -> R) -> R {
        f(&self.names.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The registration of `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<NameEntry>> {
        self.read(|n| n.get(name).cloned())
    }

    /// Last applied log index.
    pub(crate) fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Subscribes to the applied index.
    pub(crate) fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies one committed command (or a command-less entry when `cmd` is `None`).
    pub(crate) fn apply(&self, index: u64, cmd: Option<&Command>) -> Outcome {
        let mut events = Vec::new();
        // Taken before the table so that a watcher added meanwhile sees either the old table
        // and this change's events, or the new table and not its events.
        let mut watchers = lock(&self.watchers);
        let out = match cmd {
            Some(cmd) => {
                let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
                let out = names.apply(index, cmd, &mut events);
                drop(names);
                out
            }
            None => Outcome::None,
        };
        self.applied.send_replace(index);
        if !events.is_empty() {
            notify(&mut watchers, events);
        }
        out
    }

    /// Replaces the table with a snapshot's, telling watchers what changed.
    pub(crate) fn install(&self, names: Names, index: u64) {
        let mut events = Vec::new();
        let mut watchers = lock(&self.watchers);
        {
            let mut current = self.names.write().unwrap_or_else(|e| e.into_inner());
            for old in current.list("") {
                if names.get(&old.name) != Some(old) {
                    events.push(NameEvent::Released {
                        entry: NameEntry::clone(old),
                        reason: super::types::ReleaseReason::Unregistered,
                    });
                }
            }
            for new in names.list("") {
                if current.get(&new.name) != Some(new) {
                    events.push(NameEvent::Registered(NameEntry::clone(new)));
                }
            }
            *current = names;
        }
        self.applied.send_replace(index);
        if !events.is_empty() {
            notify(&mut watchers, events);
        }
    }

    /// A copy of the table, for snapshots.
    pub(crate) fn clone_names(&self) -> Names {
        self.read(Names::clone)
    }

    /// Adds a watcher; it gets the current names under `prefix` first, then every change.
    /// Registered under the same lock that orders notifications, so nothing falls between.
    pub(crate) fn watch(&self, prefix: String, recipient: Recipient<NameEvent>) {
        let mut watchers = lock(&self.watchers);
        let snapshot: Vec<NameEntry> =
            self.read(|n| n.list(&prefix).map(|e| NameEntry::clone(e)).collect());
        recipient.do_send(NameEvent::Snapshot(snapshot));
        watchers.push(Watcher { prefix, recipient });
    }
}

fn notify(watchers: &mut Vec<Watcher>, events: Vec<NameEvent>) {
    watchers.retain(|w| w.recipient.connected());
    for w in watchers.iter() {
        for e in &events {
            let name = match e {
                NameEvent::Registered(entry) | NameEvent::Released { entry, .. } => &entry.name,
                NameEvent::Snapshot(_) => continue,
            };
            if name.starts_with(&w.prefix) {
                w.recipient.do_send(e.clone());
            }
        }
    }
}

/// Named addresses read this node's replica. On client nodes it stays empty (they hold no
/// replica), so their named addresses keep the target their lookup found.
impl crate::remote::NameResolver for Replica {
    fn newer_than(&self, name: &str, version: u64) -> Option<crate::remote::NameLocation> {
        let entry = self.get(name)?;
        (entry.version > version).then(|| location(&entry))
    }
}

/// Where a registration points, for the remote layer.
pub(crate) fn location(entry: &NameEntry) -> crate::remote::NameLocation {
    crate::remote::NameLocation {
        node: entry.node.clone(),
        node_addr: entry.node_addr,
        actor_type: entry.actor_type.clone(),
        actor_id: entry.actor_id,
        version: entry.version,
    }
}
