//! Connects the sans-IO [`Membership`] core to the transport, to timers and to subscribers.
//!
//! Every input takes the core's lock, feeds the core, and drains its outputs; events are
//! delivered while the lock is held, so that a subscriber added under the same lock sees its
//! snapshot followed by exactly the events after it. Sends, timers and dials are carried out
//! after the lock is released. Everything runs on the node's network thread except
//! `members()`/`subscribe()`/`leave()`, which only take the lock.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use actix::Recipient;
use actix_rt::ArbiterHandle;
use bytes::Bytes;

use super::core::{Membership, Output, Target, Timer};
use super::types::{ClusterEvent, LoadReport, Member, MemberState};
use crate::node::{NodeId, NodeRole};
use crate::transport::{
    Channel, ChannelError, ChannelSpec, Peer, PeerEvent, PeerObserver, PeerState, QueueClass,
    Transport,
};

/// Membership frames: small, few, and loss-tolerant (a lost one is a missed probe), so they
/// take the priority lane ahead of user messages and are dropped rather than queued without
/// bound.
pub(crate) const CHANNEL: ChannelSpec = ChannelSpec {
    kind: 0x10,
    name: "membership",
    class: QueueClass::Priority,
    reaches_down: true,
};

/// Measures this node's load when the core asks for it.
pub(crate) type LoadSource = Box<dyn Fn() -> LoadReport + Send + Sync>;
/// Told when a member incarnation is down (`false`) or has left (`true`).
pub(crate) type DownHook = Box<dyn Fn(&NodeId, bool) + Send + Sync>;

struct Inner {
    core: Membership,
    subscribers: Vec<Recipient<ClusterEvent>>,
}

/// The membership side of one node.
pub(crate) struct Driver {
    inner: Mutex<Inner>,
    transport: Weak<Transport>,
    net: ArbiterHandle,
    load: LoadSource,
    down_hooks: Mutex<Vec<DownHook>>,
    /// Notified on every membership event (for waiters such as `leave`).
    pub(crate) changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Member state changes are what an operator reads first after an incident: a member's
/// arrival, failure and departure at info, the steps in between at debug.
fn log_event(ev: &ClusterEvent) {
    match ev {
        ClusterEvent::MemberUp(m) => {
            tracing::info!(member = %m.id, addr = %m.addr, connected = m.connected, "member up");
        }
        ClusterEvent::MemberDown(m) => {
            tracing::info!(member = %m.id, addr = %m.addr, connected = m.connected, "member down");
        }
        ClusterEvent::MemberLeft(m) => tracing::info!(member = %m.id, "member left"),
        ClusterEvent::MemberSuspect(m) => {
            tracing::debug!(member = %m.id, phi = m.phi, connected = m.connected, "member suspect");
        }
        ClusterEvent::MemberJoining(m) => tracing::debug!(member = %m.id, "member joining"),
        ClusterEvent::MemberLeaving(m) => tracing::debug!(member = %m.id, "member leaving"),
        ClusterEvent::Snapshot(_) | ClusterEvent::LoadChanged(_) => {}
    }
}

impl Driver {
    /// Creates the driver and registers it with the transport for membership frames and
    /// connection events. Call before the transport starts.
    pub(crate) fn new(
        core: Membership,
        transport: &Arc<Transport>,
        net: ArbiterHandle,
        load: LoadSource,
    ) -> Result<Arc<Self>, ChannelError> {
        let driver = Arc::new(Self {
            inner: Mutex::new(Inner {
                core,
                subscribers: Vec::new(),
            }),
            transport: Arc::downgrade(transport),
            net,
            load,
            down_hooks: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
        });
        let handler = Arc::new(Arc::clone(&driver));
        transport.register_channel(CHANNEL, Arc::clone(&handler) as Arc<dyn Channel>)?;
        transport.observe_peers(handler)?;
        Ok(driver)
    }

    /// Runs `f` when a member goes Down or Left.
    pub(crate) fn on_down(&self, hook: DownHook) {
        lock(&self.down_hooks).push(hook);
    }

    /// Carries out the core's first outputs (its first tick). Call on the network thread.
    pub(crate) fn start(self: &Arc<Self>) {
        self.input(|_, _| {});
    }

    /// Feeds the core, then carries out everything it asked for.
    fn input(self: &Arc<Self>, f: impl FnOnce(&mut Membership, Instant)) {
        let mut actions = Vec::new();
        let mut events = 0usize;
        {
            let mut inner = lock(&self.inner);
            let now = Instant::now();
            f(&mut inner.core, now);
            while let Some(out) = inner.core.poll_output() {
                match out {
                    Output::Event(ev) => {
                        events += 1;
                        let ev = self.fill(ev);
                        self.side_effects(&ev);
                        inner.subscribers.retain(|s| s.connected());
                        for s in &inner.subscribers {
                            s.do_send(ev.clone());
                        }
                    }
                    Output::LoadDue => {
                        let load = (self.load)();
                        inner.core.set_local_load(load, now);
                    }
                    other => actions.push(other),
                }
            }
        }
        if events > 0 {
            self.changed.notify_waiters();
        }
        for a in actions {
            self.act(a);
        }
    }

    /// Adds what only the transport knows (queue length, connection) to an event's member.
    fn fill(&self, mut ev: ClusterEvent) -> ClusterEvent {
        if let (Some(t), Some(m)) = (self.transport.upgrade(), ev.member_mut()) {
            fill_member(&t, m);
        }
        ev
    }

    /// The core's table completed with what only the transport knows.
    fn table(&self, core: &Membership) -> Vec<Member> {
        let mut members = core.members(Instant::now());
        if let Some(t) = self.transport.upgrade() {
            for m in members.iter_mut().filter(|m| m.id != t.local.id) {
                fill_member(&t, m);
            }
        }
        members
    }

    /// What a state change means for the transport and for watchers.
    fn side_effects(&self, ev: &ClusterEvent) {
        log_event(ev);
        let Some(t) = self.transport.upgrade() else {
            return;
        };
        match ev {
            ClusterEvent::MemberDown(m) | ClusterEvent::MemberLeft(m) => {
                let left = matches!(ev, ClusterEvent::MemberLeft(_));
                if let Some(p) = t.peer_by_name(m.id.name())
                    && p.id == m.id
                {
                    if left {
                        p.mark_gone();
                    } else {
                        // Requests in flight fail with NodeGone now, not at their deadline.
                        p.mark_down();
                    }
                    t.changed.notify_waiters();
                }
                for hook in lock(&self.down_hooks).iter() {
                    hook(&m.id, left);
                }
            }
            ClusterEvent::MemberUp(m) | ClusterEvent::MemberJoining(m) => {
                // Members learnt from gossip or masters get a connection (remote actors on
                // them are addressed by name); one seen alive again takes sends again.
                if let Some(p) = t.peer_for_member(&m.id, m.addr, m.role)
                    && matches!(ev, ClusterEvent::MemberUp(_))
                {
                    p.revive();
                }
            }
            _ => {}
        }
    }

    fn act(self: &Arc<Self>, action: Output) {
        let Some(t) = self.transport.upgrade() else {
            return;
        };
        match action {
            Output::Send {
                to,
                body,
                best_effort,
            } => send(&t, &to, &body, best_effort),
            Output::Timer { after, timer } => {
                let this = Arc::downgrade(self);
                let _ = self.net.spawn(async move {
                    tokio::time::sleep(after).await;
                    let Some(this) = this.upgrade() else {
                        return;
                    };
                    let Some(t) = this.transport.upgrade().filter(|t| !t.shutdown.is_set()) else {
                        return;
                    };
                    // Before failure detection runs, tell it which peers sent bytes lately.
                    let heard: Vec<(NodeId, Instant)> = if timer == Timer::Tick {
                        t.peers()
                            .iter()
                            .filter_map(|p| p.last_progress().map(|at| (p.id.clone(), at)))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    this.input(|c, now| {
                        for (id, at) in &heard {
                            c.handle_alive(id, *at);
                        }
                        c.handle_timer(timer, now);
                    });
                });
            }
            Output::Dial(addr) => t.dial_once(addr),
            Output::Event(_) | Output::LoadDue => {}
        }
    }

    /// This node and every member it knows.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.table(&lock(&self.inner).core)
    }

    /// Each member's identity and state (see [`Membership::states`]).
    pub(crate) fn states(&self) -> Vec<(NodeId, MemberState)> {
        lock(&self.inner).core.states()
    }

    /// Adds a subscriber: it gets the snapshot now and every event after it, in order.
    pub(crate) fn subscribe(&self, subscriber: Recipient<ClusterEvent>) {
        let mut inner = lock(&self.inner);
        let snapshot = self.table(&inner.core);
        subscriber.do_send(ClusterEvent::Snapshot(snapshot));
        inner.subscribers.push(subscriber);
    }

    /// Graceful leave: `Leaving` to everyone, a short wait for it to be written, then `Left`.
    /// Runs the core steps on the network thread; returns once `Left` is queued and flushed
    /// (bounded by `timeout`).
    pub(crate) async fn leave(self: &Arc<Self>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let this = Arc::clone(self);
        let _ = self
            .net
            .spawn(async move { this.input(|c, now| c.leave(now)) });
        self.flush(deadline).await;
        let this = Arc::clone(self);
        let _ = self
            .net
            .spawn(async move { this.input(|c, now| c.finish_leave(now)) });
        self.flush(deadline).await;
    }

    /// Waits until every connected peer's queue is empty, or `deadline`.
    async fn flush(&self, deadline: Instant) {
        // Let the network thread run the step queued just before.
        tokio::time::sleep(Duration::from_millis(5)).await;
        while Instant::now() < deadline {
            let Some(t) = self.transport.upgrade() else {
                return;
            };
            let pending = t
                .peers()
                .iter()
                .any(|p| p.state() == PeerState::Connected && p.queued_bytes() > 0);
            if !pending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn fill_member(t: &Transport, m: &mut Member) {
    if let Some(p) = t.peer_by_name(m.id.name())
        && p.id == m.id
    {
        m.connected = p.state() == PeerState::Connected;
        m.queued = p.queued();
    } else {
        m.connected = false;
        m.queued = 0;
    }
}

fn send(t: &Arc<Transport>, to: &Target, body: &Bytes, best_effort: bool) {
    let peer = if best_effort {
        // Heartbeats never create connections.
        t.peer_by_name(to.id.name()).filter(|p| p.id == to.id)
    } else {
        t.peer_for_member(&to.id, to.addr, to.role)
    };
    if let Some(p) = peer {
        let sent = if best_effort {
            CHANNEL.send_if_connected(&p, body)
        } else {
            CHANNEL.send(&p, body)
        };
        if sent.is_err() {
            crate::metrics::membership_dropped();
        }
    }
}

impl Channel for Arc<Driver> {
    fn on_frame(&self, peer: &Arc<Peer>, body: Bytes) {
        // Clients are no members: what they send about membership is not taken.
        if peer.info().role == NodeRole::Client {
            return;
        }
        let info = peer.info();
        self.input(|c, now| {
            let before = c.malformed();
            c.handle_message(&info, body, now);
            if c.malformed() > before {
                crate::metrics::membership_malformed();
            }
        });
    }
}

impl PeerObserver for Arc<Driver> {
    fn on_peer(&self, peer: &Arc<Peer>, event: PeerEvent) {
        if peer.info().role == NodeRole::Client {
            return;
        }
        match event {
            PeerEvent::Connected => {
                let info = peer.info();
                self.input(|c, now| c.handle_connected(&info, now));
            }
            PeerEvent::Disconnected => {
                let id = peer.id.clone();
                self.input(|c, now| c.handle_disconnected(&id, now));
            }
            PeerEvent::Goodbye => {
                let id = peer.id.clone();
                self.input(|c, now| c.handle_goodbye(&id, now));
            }
            // Membership waits for its own evidence (probes, phi): a refused port is not yet
            // a verdict every member would reach the same way.
            PeerEvent::ProcessGone => {}
        }
    }
}
