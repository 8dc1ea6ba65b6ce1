//! A core fed arbitrary bytes and well-formed but hostile messages (claims about itself, a
//! Join in someone else's name, a Leave with a bogus generation, oversized metadata, SWIM
//! packets from or about its own name) never panics and keeps its invariants: it lists
//! itself exactly once and no name twice, its table matches the events it emitted, and a
//! member that left never turns Down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use foca::Codec;
use proptest::prelude::*;

use super::{Kind, Sim, SimConfig};
use crate::membership::core::Mode;
use crate::membership::msg::{FocaCodec, FocaId, Msg, Record};
use crate::membership::types::{LoadReport, MemberState};
use crate::node::{NodeId, NodeInfo, NodeRole};

/// The node under attack; nodes 0 and 2 are honest peers (node 0 is the seed or master).
const TARGET: usize = 1;
const HONEST: usize = 3;
/// Names the attacker speaks as or about: strangers, the honest peers, the target itself.
const NAMES: usize = 6;

#[derive(Debug, Clone)]
enum Action {
    Connect(Who),
    Disconnect(Who),
    Goodbye(Who),
    Bytes(Who, Vec<u8>),
    Send(Who, Hostile),
    Wait(u64),
}

/// A name and an incarnation offset from the one the honest node has (or 1000).
#[derive(Debug, Clone, Copy)]
struct Who {
    name: usize,
    incarnation: i8,
    role: u8,
}

#[derive(Debug, Clone)]
enum Hostile {
    Updates(Vec<(Who, u32, u8)>),
    Join(Who, u32, u8),
    Leave(u8, u32),
    Meta(usize, usize, u64),
    Heartbeat(u64),
    Ack(u64),
    Swim {
        /// The sender named in the datagram; `None`: the peer itself.
        src: Option<Who>,
        dst: Who,
        message: u8,
        updates: Vec<(Who, u16, u8)>,
    },
}

fn who() -> impl Strategy<Value = Who> {
    (0..NAMES, -2i8..=2, 0u8..3).prop_map(|(name, incarnation, role)| Who {
        name,
        incarnation,
        role,
    })
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        proptest::collection::vec((who(), any::<u32>(), 0u8..6), 0..6).prop_map(Hostile::Updates),
        (who(), 0u32..4, 0u8..6).prop_map(|(w, g, s)| Hostile::Join(w, g, s)),
        (4u8..6, any::<u32>()).prop_map(|(s, g)| Hostile::Leave(s, g)),
        (0usize..2000, 0usize..300, any::<u64>()).prop_map(|(n, l, a)| Hostile::Meta(n, l, a)),
        any::<u64>().prop_map(Hostile::Heartbeat),
        any::<u64>().prop_map(Hostile::Ack),
        (
            proptest::option::of(who()),
            who(),
            1u8..12,
            proptest::collection::vec((who(), any::<u16>(), 0u8..3), 0..5)
        )
            .prop_map(|(src, dst, message, updates)| Hostile::Swim {
                src,
                dst,
                message,
                updates
            }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        1 => who().prop_map(Action::Connect),
        1 => who().prop_map(Action::Disconnect),
        1 => who().prop_map(Action::Goodbye),
        1 => (who(), proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(w, b)| Action::Bytes(w, b)),
        6 => (who(), hostile()).prop_map(|(w, h)| Action::Send(w, h)),
        2 => (0u64..3000).prop_map(Action::Wait),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Gossip),
        Just(Mode::Static),
        Just(Mode::Centralized)
    ]
}

fn name(i: usize) -> String {
    match i {
        0..HONEST => format!("n{i:03}"),
        _ => format!("evil-{i}"),
    }
}

fn info(sim: &Sim, w: Who) -> NodeInfo {
    let base = if w.name < HONEST {
        sim.id(w.name).incarnation()
    } else {
        1000
    };
    let incarnation = base.saturating_add_signed(i64::from(w.incarnation));
    let addr: SocketAddr = if w.name < HONEST {
        super::addr_of(w.name)
    } else {
        SocketAddr::from(([10, 9, 9, u8::try_from(w.name).unwrap_or(0)], 7000))
    };
    NodeInfo {
        id: NodeId::new(name(w.name), incarnation),
        addr,
        role: NodeRole::from_wire(w.role).unwrap_or_default(),
        labels: Default::default(),
    }
}

fn record(sim: &Sim, w: Who, generation: u32, state: u8) -> Record {
    let i = info(sim, w);
    Record {
        id: i.id,
        generation,
        addr: i.addr,
        role: i.role,
        state: MemberState::from_u8(state).unwrap_or(MemberState::Up),
    }
}

fn foca_id(sim: &Sim, w: Who) -> FocaId {
    let i = info(sim, w);
    FocaId::new(
        Arc::clone(i.id.name_arc()),
        i.id.incarnation(),
        0,
        i.addr,
        i.role,
    )
}

fn swim_packet(sim: &Sim, src: Who, dst: Who, message: u8, updates: &[(Who, u16, u8)]) -> Bytes {
    use foca::Message as M;
    let target = foca_id(sim, dst);
    let message = match message {
        1 => M::Ping(1),
        2 => M::Ack(1),
        3 => M::PingReq {
            target: target.clone(),
            probe_number: 1,
        },
        4 => M::IndirectPing {
            origin: target.clone(),
            probe_number: 1,
        },
        5 => M::IndirectAck {
            target: target.clone(),
            probe_number: 1,
        },
        6 => M::ForwardedAck {
            origin: target.clone(),
            probe_number: 1,
        },
        7 => M::Announce,
        8 => M::Feed,
        9 => M::Gossip,
        10 => M::Broadcast,
        _ => M::TurnUndead,
    };
    let header = foca::Header {
        src: foca_id(sim, src),
        src_incarnation: 0,
        dst: target,
        message,
    };
    let mut codec = FocaCodec;
    let mut buf = Vec::new();
    let _ = codec.encode_header(&header, &mut buf);
    if !updates.is_empty() {
        buf.put_u16(u16::try_from(updates.len()).unwrap_or(0));
        for &(w, incarnation, state) in updates {
            let state = match state {
                0 => foca::State::Alive,
                1 => foca::State::Suspect,
                _ => foca::State::Down,
            };
            let member = foca::Member::new(foca_id(sim, w), incarnation, state);
            let _ = codec.encode_member(&member, &mut buf);
        }
    }
    Msg::Foca(Bytes::from(buf)).encode()
}

fn body(sim: &Sim, from: Who, h: &Hostile) -> Bytes {
    match h {
        Hostile::Updates(records) => Msg::Updates(
            records
                .iter()
                .map(|&(w, g, s)| record(sim, w, g, s))
                .collect(),
        )
        .encode(),
        Hostile::Join(w, g, s) => Msg::Join(record(sim, *w, *g, *s)).encode(),
        Hostile::Leave(state, generation) => Msg::Leave {
            state: MemberState::from_u8(*state).unwrap_or(MemberState::Left),
            generation: *generation,
        }
        .encode(),
        Hostile::Meta(count, len, actors) => Msg::Meta {
            capabilities: (0..*count)
                .map(|i| format!("{i}{}", "x".repeat(*len)))
                .collect(),
            load: LoadReport::new(*actors, u64::MAX, Some(f32::MAX)),
        }
        .encode(),
        Hostile::Heartbeat(seq) => Msg::Heartbeat(*seq).encode(),
        Hostile::Ack(seq) => Msg::HeartbeatAck(*seq).encode(),
        Hostile::Swim {
            src,
            dst,
            message,
            updates,
        } => swim_packet(sim, src.unwrap_or(from), *dst, *message, updates),
    }
}

/// The target's invariants; the honest cores' too.
fn check(sim: &Sim) {
    sim.check_tables();
    let mut left: Vec<&NodeId> = Vec::new();
    for l in sim.log().iter().filter(|l| l.observer == TARGET) {
        match l.kind {
            Kind::Left => left.push(&l.member),
            Kind::Down => assert!(
                !left.contains(&&l.member),
                "{} went Down after it left",
                l.member
            ),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_peers_never_crash_a_core_or_break_its_invariants(
        mode in mode(),
        seed in any::<u64>(),
        actions in proptest::collection::vec(action(), 1..40),
    ) {
        let masters = usize::from(mode == Mode::Centralized);
        let mut sim = Sim::new(SimConfig::lan(HONEST, seed).mode(mode, masters));
        sim.run_until(Duration::from_secs(10), Sim::all_up).expect("3 nodes did not form");
        for a in &actions {
            match a {
                Action::Connect(w) => {
                    let i = info(&sim, *w);
                    sim.input(TARGET, |c, now| c.handle_connected(&i, now));
                }
                Action::Disconnect(w) => {
                    let i = info(&sim, *w);
                    sim.input(TARGET, |c, now| c.handle_disconnected(&i.id, now));
                }
                Action::Goodbye(w) => {
                    let i = info(&sim, *w);
                    sim.input(TARGET, |c, now| c.handle_goodbye(&i.id, now));
                }
                Action::Bytes(w, bytes) => {
                    let i = info(&sim, *w);
                    let b = Bytes::from(bytes.clone());
                    sim.input(TARGET, |c, now| c.handle_message(&i, b, now));
                }
                Action::Send(w, h) => {
                    let i = info(&sim, *w);
                    let b = body(&sim, *w, h);
                    sim.input(TARGET, |c, now| c.handle_message(&i, b, now));
                }
                Action::Wait(ms) => sim.run_for(Duration::from_millis(*ms)),
            }
            check(&sim);
        }
        sim.run_for(Duration::from_secs(3));
        check(&sim);
    }
}
