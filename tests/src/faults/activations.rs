//! Single activation of supervised names (the self-healing workload).
//!
//! Every `Keeper` a `fault-node` starts or stops prints a ledger line, read by the harness
//! with the instant it arrived; a killed process's activations end when it is killed. Clients
//! ping the names and record which activation answered. Three checks:
//!
//! - **No stale activation serves.** For each name, once an activation B has answered a ping,
//!   an activation A that answered before B must not answer a ping sent after B's answer: that
//!   would be two activations serving the name, the split brain single activation rules out.
//! - **No two live at once** by the ledger, beyond a tolerance for the reading of two pipes,
//!   unless the older one's process was paused (SIGSTOP) meanwhile: a paused process cannot be
//!   told to stop, and is fenced when it resumes (what it could serve then is the first check's
//!   business). Such overlaps are counted, not failed.
//! - **One activation per name at the end**, once every name answers again.
//! - **Migrations lose no acknowledged ping.** A Keeper counts the pings it handled, and the
//!   count is its state: it moves with a migration, and a restart starts from the state of
//!   the last migration. An activation started from another's state (its ledger line says
//!   `from <activation>`) must answer every ping with a count above every count that other
//!   activation answered: it was serialized after handling them. A lower count means a ping
//!   acknowledged before a move was lost by it. Overlaps between an activation and one started
//!   from its state are the move's handover (the older one is paused, serving nothing; the
//!   first check covers serving) and are counted, not failed; so are overlaps with an
//!   activation started from another's state that never answered a ping (a move's target
//!   whose move did not commit, until it is settled and stopped: nothing can reach it).

use std::collections::{BTreeMap, HashMap};

/// One answered ping. Times are nanoseconds on the harness's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The name pinged.
    pub name: String,
    /// When the client sent it.
    pub invoked: u64,
    /// When the answer was read.
    pub completed: u64,
    /// The activation that answered: `<node> <incarnation> <seq>`.
    pub activation: String,
    /// The count it answered with (pings it and its state's predecessors handled).
    pub count: Option<u64>,
}

impl Ping {
    /// A ping's answer `<node> <incarnation> <seq> <count>`, split into activation and count.
    pub fn parse_answer(answer: &str) -> (String, Option<u64>) {
        let words: Vec<&str> = answer.split_whitespace().collect();
        match words.as_slice() {
            [node, inc, seq, count] => (format!("{node} {inc} {seq}"), count.parse().ok()),
            _ => (answer.trim().to_owned(), None),
        }
    }
}

/// One activation's life, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The supervised name.
    pub name: String,
    /// `<node> <incarnation> <seq>`.
    pub activation: String,
    /// Node name.
    pub node: String,
    /// Node incarnation.
    pub incarnation: u64,
    /// When its start was read.
    pub start: u64,
    /// When its stop was read, or its process killed; `None` while it lives.
    pub end: Option<u64>,
    /// The activation whose state it started from, if not the spawn state.
    pub from: Option<String>,
}

/// The activations of `ledger` (`start|stop <name> <node> <incarnation> <seq>` lines with the
/// time each was read); an activation of an incarnation in `killed` (node, incarnation, time)
/// ends at the kill if it had not stopped before.
pub fn spans(ledger: &[(u64, String)], killed: &[(String, u64, u64)]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut open: HashMap<(String, String), usize> = HashMap::new();
    for (at, line) in ledger {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, name, node, incarnation, seq, from) = match words.as_slice() {
            [kind, name, node, incarnation, seq] => (kind, name, node, incarnation, seq, None),
            [
                kind,
                name,
                node,
                incarnation,
                seq,
                "from",
                f_node,
                f_inc,
                f_seq,
            ] => (
                kind,
                name,
                node,
                incarnation,
                seq,
                Some(format!("{f_node} {f_inc} {f_seq}")),
            ),
            _ => continue,
        };
        let Ok(incarnation) = incarnation.parse::<u64>() else {
            continue;
        };
        let activation = format!("{node} {incarnation} {seq}");
        let key = ((*name).to_owned(), activation.clone());
        match *kind {
            "start" => {
                open.insert(key, out.len());
                out.push(Span {
                    name: (*name).to_owned(),
                    activation,
                    node: (*node).to_owned(),
                    incarnation,
                    start: *at,
                    end: None,
                    from,
                });
            }
            "stop" => {
                if let Some(i) = open.remove(&key) {
                    out[i].end = Some(*at);
                }
            }
            _ => {}
        }
    }
    for span in out.iter_mut().filter(|s| s.end.is_none()) {
        if let Some((.., at)) = killed
            .iter()
            .find(|(n, i, at)| *n == span.node && *i == span.incarnation && *at >= span.start)
        {
            span.end = Some(*at);
        }
    }
    out
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Violations, one line each.
    pub violations: Vec<String>,
    /// Ledger overlaps explained by a pause of the older activation's process.
    pub paused_overlaps: usize,
    /// Ledger overlaps of an activation and one started from its state (a migration).
    pub handovers: usize,
    /// Ledger overlaps with an activation started from another's state that never answered a
    /// ping: a migration's target whose move did not commit, until it is settled and stopped.
    pub unserved_adoptions: usize,
}

/// Checks `pings` and `spans` (see the module); `paused` lists (node, from, to) windows in
/// which a node's process was stopped; `tolerance` is how much two ledger lines read from two
/// pipes may be out of order.
pub fn check(
    pings: &[Ping],
    spans: &[Span],
    paused: &[(String, u64, u64)],
    tolerance: u64,
) -> Verdict {
    let mut verdict = Verdict::default();
    // Stale serving.
    let mut by_name: BTreeMap<&str, Vec<&Ping>> = BTreeMap::new();
    for p in pings {
        by_name.entry(&p.name).or_default().push(p);
    }
    for (name, pings) in &by_name {
        // Each activation: its first answer and its last request answered.
        let mut range: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for p in pings {
            let r = range
                .entry(&p.activation)
                .or_insert((p.completed, p.invoked));
            r.0 = r.0.min(p.completed);
            r.1 = r.1.max(p.invoked);
        }
        for (a, (first, last)) in &range {
            if let Some(b) = pings
                .iter()
                .find(|b| b.activation != *a && b.invoked > *first && b.completed < *last)
            {
                verdict.violations.push(format!(
                    "{name}: activation {a} answered before and after {} answered (at {:.3} s)",
                    b.activation,
                    b.completed as f64 / 1e9
                ));
                break;
            }
        }
    }
    // Ledger overlaps.
    let answered: std::collections::HashSet<(&str, &str)> = pings
        .iter()
        .map(|p| (p.name.as_str(), p.activation.as_str()))
        .collect();
    let unserved_adoption = |s: &Span| {
        s.from.is_some() && !answered.contains(&(s.name.as_str(), s.activation.as_str()))
    };
    let mut spans_of: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        spans_of.entry(&s.name).or_default().push(s);
    }
    for (name, list) in &spans_of {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let (old, new) = if a.start <= b.start { (a, b) } else { (b, a) };
                let old_end = old.end.unwrap_or(u64::MAX);
                if old_end <= new.start.saturating_add(tolerance) {
                    continue;
                }
                if new.from.as_deref() == Some(old.activation.as_str()) {
                    verdict.handovers += 1;
                    continue;
                }
                if unserved_adoption(old) || unserved_adoption(new) {
                    verdict.unserved_adoptions += 1;
                    continue;
                }
                let overlap_end = old_end.min(new.end.unwrap_or(u64::MAX));
                let was_paused = paused.iter().any(|(node, from, to)| {
                    *node == old.node && *from <= overlap_end && *to >= old.start
                });
                if was_paused {
                    verdict.paused_overlaps += 1;
                } else {
                    verdict.violations.push(format!(
                        "{name}: activations {} and {}{} were alive together from {:.3} s to {}",
                        old.activation,
                        new.activation,
                        new.from
                            .as_ref()
                            .map(|f| format!(" (started from {f})"))
                            .unwrap_or_default(),
                        new.start as f64 / 1e9,
                        if overlap_end == u64::MAX {
                            "the end".to_owned()
                        } else {
                            format!("{:.3} s", overlap_end as f64 / 1e9)
                        }
                    ));
                }
            }
        }
    }
    // Acknowledged pings survive the moves.
    let mut acked: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for p in pings {
        if let Some(c) = p.count {
            let r = acked.entry((&p.name, &p.activation)).or_insert((c, c));
            r.0 = r.0.min(c);
            r.1 = r.1.max(c);
        }
    }
    for s in spans {
        let Some(from) = &s.from else { continue };
        let (Some(&(lowest, _)), Some(&(_, highest))) = (
            acked.get(&(s.name.as_str(), s.activation.as_str())),
            acked.get(&(s.name.as_str(), from.as_str())),
        ) else {
            continue;
        };
        if lowest <= highest {
            verdict.violations.push(format!(
                "{}: activation {} (started from {from}'s state) answered count {lowest}, but \
                 {from} had acknowledged count {highest}: an acknowledged ping was lost",
                s.name, s.activation
            ));
        }
    }
    verdict
}

/// Names of `names` without exactly one live activation in `spans`.
pub fn not_single(names: &[String], spans: &[Span]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| {
            let live: Vec<&str> = spans
                .iter()
                .filter(|s| &s.name == n && s.end.is_none())
                .map(|s| s.activation.as_str())
                .collect();
            (live.len() != 1).then(|| format!("{n}: {} live activations {live:?}", live.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(name: &str, from: u64, to: u64, activation: &str) -> Ping {
        Ping {
            name: name.into(),
            invoked: from,
            completed: to,
            activation: activation.into(),
            count: None,
        }
    }

    fn counted(name: &str, at: u64, activation: &str, count: u64) -> Ping {
        Ping {
            count: Some(count),
            ..ping(name, at, at + 1, activation)
        }
    }

    #[test]
    fn a_migration_is_a_handover_and_a_lost_acknowledged_ping_fails() {
        let ledger = vec![
            line(0, "start s n1 1 0"),
            line(100, "start s n2 1 0 from n1 1 0"),
            line(300, "stop s n1 1 0"),
        ];
        let spans = spans(&ledger, &[]);
        assert_eq!(spans[1].from.as_deref(), Some("n1 1 0"));
        let kept = vec![
            counted("s", 10, "n1 1 0", 1),
            counted("s", 20, "n1 1 0", 2),
            counted("s", 400, "n2 1 0", 3),
        ];
        let v = check(&kept, &spans, &[], 10);
        assert!(v.violations.is_empty() && v.handovers == 1, "{v:?}");
        // The new activation answers as if the second ping had never been handled.
        let lost = vec![
            counted("s", 10, "n1 1 0", 1),
            counted("s", 20, "n1 1 0", 2),
            counted("s", 400, "n2 1 0", 2),
        ];
        assert_eq!(check(&lost, &spans, &[], 10).violations.len(), 1);
        // A target whose move did not commit lingers beside the next activations; it never
        // served, so it is counted; had it answered, it would be a second activation.
        let ledger = vec![
            line(0, "start s n1 1 0"),
            line(100, "start s n3 1 0 from n1 1 0"),
            line(150, "start s n2 1 0 from n1 1 0"),
            line(200, "stop s n1 1 0"),
            line(900, "stop s n3 1 0"),
        ];
        let spans_ = super::spans(&ledger, &[]);
        let served = vec![counted("s", 300, "n2 1 0", 1)];
        let v = check(&served, &spans_, &[], 10);
        assert!(
            v.violations.is_empty() && v.unserved_adoptions == 1,
            "{v:?}"
        );
        let mut both = served.clone();
        both.push(counted("s", 400, "n3 1 0", 2));
        assert!(!check(&both, &spans_, &[], 10).violations.is_empty());
        assert_eq!(
            Ping::parse_answer("n2 1 0 7"),
            ("n2 1 0".to_owned(), Some(7))
        );
    }

    fn line(at: u64, s: &str) -> (u64, String) {
        (at, s.to_owned())
    }

    #[test]
    fn a_handover_passes_and_a_stale_answer_after_it_fails() {
        let pings = vec![
            ping("s", 0, 10, "n1 1 0"),
            ping("s", 20, 30, "n1 1 0"),
            ping("s", 40, 50, "n2 1 0"),
            ping("s", 60, 70, "n2 1 0"),
        ];
        assert!(check(&pings, &[], &[], 0).violations.is_empty());
        let mut stale = pings.clone();
        stale.push(ping("s", 80, 90, "n1 1 0"));
        assert_eq!(check(&stale, &[], &[], 0).violations.len(), 1);
        // Overlapping requests at the handover may be answered by either.
        let racing = vec![
            ping("s", 0, 10, "n1 1 0"),
            ping("s", 20, 45, "n1 1 0"),
            ping("s", 21, 40, "n2 1 0"),
        ];
        assert!(check(&racing, &[], &[], 0).violations.is_empty());
    }

    #[test]
    fn the_ledger_overlap_counts_unless_a_pause_explains_it() {
        let ledger = vec![
            line(0, "start s n1 1 0"),
            line(100, "start s n2 1 0"),
            line(200, "stop s n1 1 0"),
            line(300, "start t n1 1 1"),
        ];
        let killed = vec![("n1".to_owned(), 1, 400)];
        let spans = spans(&ledger, &killed);
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[2].end, Some(400));
        let v = check(&[], &spans, &[], 10);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        let v = check(&[], &spans, &[("n1".to_owned(), 50, 150)], 10);
        assert!(v.violations.is_empty() && v.paused_overlaps == 1, "{v:?}");
        // Within the tolerance: two pipes read out of order.
        assert!(check(&[], &spans, &[], 150).violations.is_empty());
        assert_eq!(
            not_single(&["s".into(), "t".into()], &spans),
            ["t: 0 live activations []"]
        );
    }
}
