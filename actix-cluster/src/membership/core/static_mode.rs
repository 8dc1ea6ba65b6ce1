//! Static discovery: every node knows the seed list, monitors every other node and decides
//! alone. Nobody spreads a verdict, so Down is not final: a member that answers again is
//! taken back, and no generation is needed to come back.

use std::sync::Arc;
use std::time::Instant;

use super::Rules;
use super::detection::Silent;
use super::table::{Entry, Table};
use crate::membership::types::MemberState;
use crate::node::NodeInfo;

pub(super) struct Static;

impl Rules for Static {
    fn down_is_final(&self) -> bool {
        false
    }

    /// A handshake is proof of life on its own.
    fn connected(&mut self, t: &mut Table, info: &NodeInfo, now: Instant) {
        t.set_state(info.id.name_arc(), MemberState::Up, now);
    }

    fn watches(&self, _t: &Table, _e: &Entry) -> bool {
        true
    }

    /// Everyone but those that left: a Down member is still watched so that it can come back.
    fn monitored(&self, t: &Table) -> Vec<Arc<str>> {
        t.members
            .iter()
            .filter(|(_, e)| e.state != MemberState::Left)
            .map(|(n, _)| Arc::clone(n))
            .collect()
    }

    fn answered(&mut self, t: &mut Table, name: &Arc<str>, now: Instant) {
        let Some(e) = t.members.get(name) else {
            return;
        };
        let back = matches!(
            e.state,
            MemberState::Suspect | MemberState::Down | MemberState::Joining
        );
        if back && t.sounds_alive(e, now) {
            t.set_state(name, MemberState::Up, now);
        }
    }

    fn silent(&mut self, t: &mut Table, silent: Silent, now: Instant) {
        for (name, _, state) in silent.fresh {
            if state == MemberState::Leaving {
                t.set_state(&name, MemberState::Left, now);
            } else {
                t.set_state(&name, MemberState::Suspect, now);
            }
        }
        for name in silent.overdue {
            t.set_state(&name, MemberState::Down, now);
        }
    }

    fn reannounce(&mut self, t: &mut Table, _now: Instant) {
        for i in 0..t.settings.seeds.len() {
            let addr = t.settings.seeds[i];
            if addr != t.me.addr && t.connected_at(addr, false).is_none() {
                t.dial(addr);
            }
        }
    }
}
