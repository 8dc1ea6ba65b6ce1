//! Admission of inbound connections under hostile load: caps on open and handshaking
//! connections (the oldest handshake is evicted to make room), a memory budget shared by every
//! connection's partially received frame, and a limiter for the log lines such events write.
//!
//! The decisions are plain functions of the tables below; the accept loop and the readers only
//! act on them (close a socket, end a reader). No clock is read here: the log limiter is
//! given `now`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::peer::Signal;
use crate::limits::Limits;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an inbound connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// `max_connections` established connections are open and no handshake can be evicted.
    #[error("{0} connections open, the configured maximum")]
    ConnectionsFull(usize),
}

#[derive(Debug, Default)]
struct Tables {
    /// Handshakes in progress by admission order: the first is the oldest. A real handshake
    /// completes in milliseconds, so the oldest is the one most likely stalled or idle.
    handshakes: BTreeMap<u64, Arc<Signal>>,
    next_handshake: u64,
    /// Bytes of the partial frame each connection's reader holds, and its close signal.
    partial: HashMap<u64, (usize, Arc<Signal>)>,
    partial_total: usize,
}

/// The admission state of one node.
#[derive(Debug)]
pub(crate) struct Admission {
    max_connections: usize,
    max_handshakes: usize,
    memory_budget: usize,
    tables: Mutex<Tables>,
}

/// A handshake slot, released on drop. Its signal is set when the handshake is evicted.
#[derive(Debug)]
pub(crate) struct HandshakeSlot {
    admission: Arc<Admission>,
    id: u64,
    evicted: Arc<Signal>,
}

impl HandshakeSlot {
    /// Completes when this handshake was evicted to make room for a newer one.
    pub(crate) async fn evicted(&self) {
        self.evicted.wait().await;
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.admission.tables).handshakes.remove(&self.id);
    }
}

/// One connection's share of the inbound memory budget, released on drop.
#[derive(Debug)]
pub(crate) struct BudgetShare {
    admission: Arc<Admission>,
    conn: u64,
    closed: Arc<Signal>,
}

impl BudgetShare {
    /// Records that this connection now holds `bytes` of a partial frame. Returns `false` if
    /// this connection must close because the budget is exceeded and it holds the largest
    /// partial frame; if another connection holds it, that one is told to close.
    pub(crate) fn hold(&self, bytes: usize) -> bool {
        self.admission.hold(self.conn, bytes)
    }

    /// Completes when the budget closed this connection for holding the largest partial frame.
    pub(crate) async fn closed(&self) {
        self.closed.wait().await;
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        let mut t = lock(&self.admission.tables);
        if let Some((bytes, _)) = t.partial.remove(&self.conn) {
            t.partial_total -= bytes;
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_handshakes: limits.max_handshakes,
            memory_budget: limits.inbound_memory_bytes,
            tables: Mutex::new(Tables::default()),
        }
    }

    /// Admits an inbound connection into the handshake table while `open` connections are
    /// established. Makes room by evicting the oldest handshakes; returns the slot and how many
    /// were evicted, or a refusal when only established connections fill the cap.
    pub(crate) fn admit(self: &Arc<Self>, open: usize) -> Result<(HandshakeSlot, usize), Refusal> {
        let mut t = lock(&self.tables);
        let mut evicted = 0;
        while t.handshakes.len() >= self.max_handshakes
            || open + t.handshakes.len() >= self.max_connections
        {
            let Some((_, oldest)) = t.handshakes.pop_first() else {
                return Err(Refusal::ConnectionsFull(open));
            };
            oldest.set();
            evicted += 1;
        }
        let id = t.next_handshake;
        t.next_handshake += 1;
        let signal = Arc::new(Signal::default());
        t.handshakes.insert(id, Arc::clone(&signal));
        Ok((
            HandshakeSlot {
                admission: Arc::clone(self),
                id,
                evicted: signal,
            },
            evicted,
        ))
    }

    /// Handshakes in progress.
    pub(crate) fn handshaking(&self) -> usize {
        lock(&self.tables).handshakes.len()
    }

    /// A share of the inbound memory budget for connection `conn`.
    pub(crate) fn share(self: &Arc<Self>, conn: u64) -> BudgetShare {
        let closed = Arc::new(Signal::default());
        lock(&self.tables)
            .partial
            .insert(conn, (0, Arc::clone(&closed)));
        BudgetShare {
            admission: Arc::clone(self),
            conn,
            closed,
        }
    }

    fn hold(&self, conn: u64, bytes: usize) -> bool {
        let mut t = lock(&self.tables);
        let Some(entry) = t.partial.get_mut(&conn) else {
            // Already closed by the budget.
            return false;
        };
        let before = std::mem::replace(&mut entry.0, bytes);
        t.partial_total = t.partial_total - before + bytes;
        if t.partial_total <= self.memory_budget {
            return true;
        }
        let Some((&victim, _)) = t.partial.iter().max_by_key(|(_, (b, _))| *b) else {
            return true;
        };
        // Removed now so that its bytes stop counting at once and it is not chosen twice.
        if let Some((b, signal)) = t.partial.remove(&victim) {
            t.partial_total -= b;
            signal.set();
        }
        victim != conn
    }
}

/// Lets one log line per kind through per interval and counts the rest, so that a flood of
/// hostile connections costs a line a second, not a line a connection.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `kind` may be logged at `now`; if so, with how many of its kind were
    /// suppressed since the last one.
    pub(crate) fn allow(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = lock(&self.kinds);
        let (last, suppressed) = kinds.entry(kind).or_insert((None, 0));
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, max_handshakes: usize, budget: usize) -> Arc<Admission> {
        Arc::new(Admission::new(&Limits {
            max_connections,
            max_handshakes,
            inbound_memory_bytes: budget,
            ..Limits::default()
        }))
    }

    #[test]
    fn a_full_handshake_table_evicts_its_oldest_entry() {
        let a = admission(100, 2, 1 << 20);
        let (first, _) = a.admit(0).expect("admitted");
        let (second, _) = a.admit(0).expect("admitted");
        let (_third, evicted) = a.admit(0).expect("admitted");
        assert_eq!(evicted, 1);
        assert!(first.evicted.is_set());
        assert!(!second.evicted.is_set());
        assert_eq!(a.handshaking(), 2);
        drop(first);
        assert_eq!(a.handshaking(), 2, "an evicted slot was already released");
    }

    #[test]
    fn established_connections_count_against_the_connection_cap() {
        let a = admission(3, 10, 1 << 20);
        let (first, _) = a.admit(2).expect("admitted");
        let (_second, evicted) = a.admit(2).expect("admitted");
        assert_eq!(evicted, 1);
        assert!(first.evicted.is_set());
        assert!(matches!(a.admit(3), Err(Refusal::ConnectionsFull(3))));
    }

    #[test]
    fn over_budget_the_largest_partial_frame_is_closed() {
        let a = admission(100, 10, 1000);
        let (x, y, z) = (a.share(1), a.share(2), a.share(3));
        assert!(x.hold(600));
        assert!(y.hold(300));
        // z pushes the total over the budget; x holds the most and is closed, not z.
        assert!(z.hold(200));
        assert!(x.closed.is_set());
        assert!(!y.closed.is_set() && !z.closed.is_set());
        assert!(!x.hold(10), "a closed share stays closed");
        // Now z is the largest and itself over the budget.
        assert!(!z.hold(800));
        assert!(z.closed.is_set());
        drop((x, z));
        assert!(y.hold(900));
    }

    #[test]
    fn the_log_limiter_passes_one_line_per_interval_and_counts_the_rest() {
        let l = LogLimiter::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(l.allow("x", t), Some(0));
        assert_eq!(l.allow("x", t + Duration::from_millis(10)), None);
        assert_eq!(l.allow("x", t + Duration::from_millis(20)), None);
        assert_eq!(l.allow("y", t), Some(0));
        assert_eq!(l.allow("x", t + Duration::from_secs(1)), Some(2));
    }
}
