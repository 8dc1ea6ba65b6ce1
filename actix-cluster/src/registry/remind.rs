//! Reminders of virtual actors: kept in the name table (so replicated, snapshotted, and with
//! a durable registry kept across a restart of the whole cluster), fired by the leader.
//!
//! Each round the leader takes the reminders that are due and, for each, commits a
//! `FireReminder` that moves its due time to the next tick after now (ticks missed while no
//! leader fired them are skipped); only a write that took the tick fires it, through the sink
//! the system layer installs, which delivers it to the identity (activating it if it is
//! passivated). A tick is fired at most once: a leader that fails between the write and the
//! delivery loses that tick, which is then skipped like any missed one.

use std::sync::Arc;

use super::raft::RaftHandle;
use super::service::Registry;
use super::state::{Command, Outcome, Reminder, reminder_key};
use super::{RegistryError, validate_name};

/// What the system layer does with a due reminder: (actor type, id, reminder name).
pub(crate) type ReminderSink = Box<dyn Fn(String, String, String) + Send + Sync>;

/// Reminders fired per leader round, at most: a burst after a long outage is spread out.
const FIRE_PER_ROUND: usize = 256;

/// The shortest period a reminder may have.
pub(crate) const MIN_REMINDER_PERIOD_MS: u64 = 100;

impl Registry {
    /// Installs what fires reminders (once, when the node starts).
    pub(crate) fn on_reminder(&self, sink: ReminderSink) {
        let _ = self.reminder_sink.set(sink);
    }

    /// Sets reminder `name` of identity (`actor_type`, `id`): first due `period_ms` from now,
    /// then every `period_ms`.
    pub(crate) async fn set_reminder(
        &self,
        actor_type: &str,
        id: &str,
        name: &str,
        period_ms: u64,
    ) -> Result<(), RegistryError> {
        let key = reminder_key(actor_type, id, name);
        validate_name(&key)?;
        if period_ms < MIN_REMINDER_PERIOD_MS {
            return Err(RegistryError::Refused(format!(
                "a reminder's period must be at least {MIN_REMINDER_PERIOD_MS} ms, not {period_ms} ms"
            )));
        }
        let reminder = Reminder {
            actor_type: actor_type.to_owned(),
            id: id.to_owned(),
            name: name.to_owned(),
            period_ms,
            due_ms: super::supervise::unix_ms().saturating_add(period_ms),
        };
        self.write(Command::SetReminder { reminder })
            .await
            .map(|_| ())
    }

    /// Removes reminder `name` of identity (`actor_type`, `id`).
    pub(crate) async fn drop_reminder(
        &self,
        actor_type: &str,
        id: &str,
        name: &str,
    ) -> Result<(), RegistryError> {
        let key = reminder_key(actor_type, id, name);
        validate_name(&key)?;
        self.write(Command::DropReminder { key }).await.map(|_| ())
    }

    /// The names and periods (ms) of identity (`actor_type`, `id`)'s reminders, from this
    /// node's replica.
    pub(crate) fn reminders_of(&self, actor_type: &str, id: &str) -> Vec<(String, u64)> {
        self.replica.read(|n| {
            n.reminders_of(actor_type, id)
                .into_iter()
                .map(|r| (r.name, r.period_ms))
                .collect()
        })
    }

    /// Leader: fires the reminders that are due.
    pub(super) async fn remind(self: &Arc<Self>, raft: &RaftHandle) {
        let Some(sink) = self.reminder_sink.get() else {
            return;
        };
        let now = super::supervise::unix_ms();
        let due = self.replica.read(|n| n.due_reminders(now, FIRE_PER_ROUND));
        for r in due {
            let cmd = Command::FireReminder {
                key: r.key(),
                due_ms: r.due_ms,
                next_ms: r.next_after(now),
            };
            match self.leader_write(raft, cmd).await {
                Ok(Outcome::Fired) => {
                    crate::metrics::reminder_fired();
                    sink(r.actor_type, r.id, r.name);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(reminder = %r.key(), error = %e, "a reminder's tick was not taken; the next round tries again");
                    return;
                }
            }
        }
    }
}
