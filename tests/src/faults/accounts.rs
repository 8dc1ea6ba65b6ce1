//! Virtual actors with state (the virtual actor workload).
//!
//! Clients send numbered updates to a few virtual accounts (`fault-node`'s `Account`, which
//! saves after every update, before it answers); at the end every account's saved updates are
//! read back. Checks, per account:
//!
//! - **No acknowledged update lost**: every update answered `ok` is in the final state.
//! - **None applied twice**: no update appears twice (a handle never sends again what may have
//!   been handled).
//! - **No definite failure applied**: an update answered `fail` (certainly not delivered) is
//!   not in the final state.
//! - **Nothing invented**: every update in the final state was sent to that account.
//! - **Every account answers at the end.**
//!
//! Activations report their start and stop to the same ledger as the supervised names (under
//! the name `v:<account>`), so the single-activation checks of [`super::activations`] cover
//! them too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How an update was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and saved.
    Acked,
    /// Certainly not applied.
    Failed,
    /// No answer, or one that does not say.
    Unknown,
}

/// One update a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The account.
    pub account: String,
    /// Its number, unique in the run.
    pub op: u64,
    /// What the client saw.
    pub outcome: Outcome,
}

/// The violations of `updates` against the accounts' final states (`None`: the account did
/// not answer at the end).
pub fn check(updates: &[Update], finals: &BTreeMap<String, Option<Vec<u64>>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut sent: HashMap<&str, HashMap<u64, Outcome>> = HashMap::new();
    for u in updates {
        sent.entry(u.account.as_str())
            .or_default()
            .insert(u.op, u.outcome);
    }
    for (account, state) in finals {
        let Some(applied) = state else {
            out.push(format!("{account}: did not answer at the end"));
            continue;
        };
        let mine = sent.get(account.as_str());
        let mut seen = BTreeSet::new();
        for op in applied {
            if !seen.insert(*op) {
                out.push(format!("{account}: update {op} applied twice"));
            }
            match mine.and_then(|m| m.get(op)) {
                None => out.push(format!(
                    "{account}: update {op} applied but never sent to it"
                )),
                Some(Outcome::Failed) => out.push(format!(
                    "{account}: update {op} applied although it was answered as not delivered"
                )),
                Some(_) => {}
            }
        }
        for (op, outcome) in mine.into_iter().flatten() {
            if *outcome == Outcome::Acked && !seen.contains(op) {
                out.push(format!("{account}: acknowledged update {op} lost"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(account: &str, op: u64, outcome: Outcome) -> Update {
        Update {
            account: account.into(),
            op,
            outcome,
        }
    }

    #[test]
    fn a_clean_history_passes_and_unknown_updates_may_go_either_way() {
        let updates = [
            u("a", 1, Outcome::Acked),
            u("a", 2, Outcome::Unknown),
            u("a", 3, Outcome::Unknown),
            u("b", 4, Outcome::Failed),
        ];
        let finals = BTreeMap::from([
            ("a".to_owned(), Some(vec![1, 3])),
            ("b".to_owned(), Some(vec![])),
        ]);
        assert_eq!(check(&updates, &finals), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_violation_is_reported() {
        let updates = [
            u("a", 1, Outcome::Acked),
            u("a", 2, Outcome::Acked),
            u("a", 3, Outcome::Failed),
            u("b", 4, Outcome::Acked),
        ];
        let finals = BTreeMap::from([
            ("a".to_owned(), Some(vec![1, 1, 3, 9])),
            ("b".to_owned(), None),
        ]);
        let found = check(&updates, &finals);
        for want in [
            "a: update 1 applied twice",
            "a: update 3 applied although",
            "a: update 9 applied but never sent",
            "a: acknowledged update 2 lost",
            "b: did not answer at the end",
        ] {
            assert!(
                found.iter().any(|v| v.starts_with(want)),
                "{want}: {found:?}"
            );
        }
        assert_eq!(found.len(), 5, "{found:?}");
    }
}
