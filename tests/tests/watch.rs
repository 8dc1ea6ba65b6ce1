//! Cross-node watch: a watcher gets exactly one `Terminated` when the watched actor stops
//! (`ActorStopped`), its node crashes (`NodeDown`, from membership, or from the transport on a
//! client) or leaves (`NodeLeft`); none after `unwatch`; one at once for an actor already
//! stopped. Targets on the watcher's own node behave the same; the number of watches is bounded.

#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{
    MAX_WATCHES_PER_NODE, Terminated, TerminatedReason, Timeouts, WatchError, WatchId,
};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{Halt, Mortal, Ping, wait_until};

/// Hands every notification to the test thread, plus an echo that marks how far the
/// collector's mailbox has been read.
struct Collector(mpsc::Sender<Seen>);

#[derive(Debug)]
enum Seen {
    Terminated(Terminated),
    Echo,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Terminated> for Collector {
    type Result = ();
    fn handle(&mut self, t: Terminated, _: &mut Context<Self>) {
        let _ = self.0.send(Seen::Terminated(t));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Echo;

impl Handler<Echo> for Collector {
    type Result = ();
    fn handle(&mut self, _: Echo, _: &mut Context<Self>) {
        let _ = self.0.send(Seen::Echo);
    }
}

/// A collector running on `node` and what it receives.
struct Inbox {
    addr: Addr<Collector>,
    rx: mpsc::Receiver<Seen>,
}

impl Inbox {
    fn on(node: &TestNode) -> Self {
        let (tx, rx) = mpsc::channel();
        let addr = node
            .run(move |_| async move { Collector(tx).start() })
            .unwrap();
        Self { addr, rx }
    }

    fn recipient(&self) -> Recipient<Terminated> {
        self.addr.clone().recipient()
    }

    /// The next notification, waiting at most [`TEST_DEADLINE`].
    fn next(&self) -> Terminated {
        match self.rx.recv_timeout(TEST_DEADLINE) {
            Ok(Seen::Terminated(t)) => t,
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    /// Asserts that nothing but the echo is queued: every notification sent to the collector
    /// before this call has been received.
    fn assert_drained(&self) {
        self.addr.do_send(Echo);
        match self.rx.recv_timeout(TEST_DEADLINE) {
            Ok(Seen::Echo) => {}
            other => panic!("expected no further notification, got {other:?}"),
        }
    }
}

/// A watcher `a` and a target `b`, connected.
fn two_nodes(cluster: &str) -> (TestNode, TestNode) {
    two_nodes_with(cluster, Timeouts::lan())
}

/// Like [`two_nodes`], with the watcher's transport timeouts.
fn two_nodes_with(cluster: &str, timeouts: Timeouts) -> (TestNode, TestNode) {
    let a = TestNode::start(
        cluster,
        plaintext("a").timeouts(timeouts).build().unwrap(),
        |b| b.register::<Mortal>(),
    )
    .unwrap();
    let seed = a.system().local_addr().to_string();
    let b = TestNode::start(
        cluster,
        plaintext("b").seed_nodes([seed]).build().unwrap(),
        |b| b.register::<Mortal>(),
    )
    .unwrap();
    for node in [&a, &b] {
        let up = node
            .run(|s| async move { s.wait_for_peers(1, TEST_DEADLINE).await })
            .unwrap();
        assert!(up, "{} did not connect", node.system().node_id());
    }
    (a, b)
}

/// Starts a `Mortal` on `host`, addressed from `from`.
fn mortal_on(from: &TestNode, host: &'static str) -> RemoteAddr<Mortal> {
    from.run(move |s| async move { s.remote_actor::<Mortal>(host, |_| Mortal).await })
        .unwrap()
        .unwrap()
}

fn watch(from: &TestNode, target: &RemoteAddr<Mortal>, inbox: &Inbox) -> WatchId {
    try_watch(from, target, inbox).unwrap()
}

fn try_watch(
    from: &TestNode,
    target: &RemoteAddr<Mortal>,
    inbox: &Inbox,
) -> Result<WatchId, WatchError> {
    let (target, recipient) = (target.clone(), inbox.recipient());
    from.run(move |s| async move { s.watch(&target, recipient).await })
        .unwrap()
}

/// Stops `target` and waits until it no longer answers.
fn halt(from: &TestNode, target: &RemoteAddr<Mortal>) {
    let t = target.clone();
    from.run(move |_| async move { t.send(Halt).await })
        .unwrap()
        .unwrap();
    let stopped = wait_until(TEST_DEADLINE, || {
        let t = target.clone();
        from.run(move |_| async move { t.send(Ping).await })
            .unwrap()
            .is_err()
    });
    assert!(stopped, "{target:?} still answers after Halt");
}

fn assert_fired(
    t: &Terminated,
    target: &RemoteAddr<Mortal>,
    watch: WatchId,
    reason: TerminatedReason,
) {
    assert!(t.actor.is(target), "{t:?} is not about {target:?}");
    assert_eq!(t.watch, watch, "{t:?}");
    assert_eq!(t.reason, reason, "{t:?}");
}

#[test]
fn watcher_gets_exactly_one_actor_stopped_when_a_remote_actor_stops() {
    let (a, _b) = two_nodes("watch-stop");
    let inbox = Inbox::on(&a);
    let target = mortal_on(&a, "b");
    let id = watch(&a, &target, &inbox);

    halt(&a, &target);
    assert_fired(&inbox.next(), &target, id, TerminatedReason::ActorStopped);
    // The record is gone: nothing can fire it again, and unwatching it is a no-op.
    assert!(!a.system().unwatch(id));
    inbox.assert_drained();
}

#[test]
fn an_unwatched_actor_is_not_reported() {
    let (a, _b) = two_nodes("watch-unwatch");
    let inbox = Inbox::on(&a);
    let [gone, other, marker] = [(); 3].map(|()| mortal_on(&a, "b"));
    let gone_id = watch(&a, &gone, &inbox);
    let other_id = watch(&a, &other, &inbox);
    assert!(a.system().unwatch(gone_id));
    assert!(
        !a.system().unwatch(gone_id),
        "a second unwatch finds nothing"
    );

    // `gone` stops strictly before `other`, and `marker` only once `other` was reported, so
    // a report about `gone` would have been sent no later than `other`'s and before
    // `marker`'s, on the same ordered connection.
    halt(&a, &gone);
    halt(&a, &other);
    assert_fired(
        &inbox.next(),
        &other,
        other_id,
        TerminatedReason::ActorStopped,
    );
    let marker_id = watch(&a, &marker, &inbox);
    halt(&a, &marker);
    assert_fired(
        &inbox.next(),
        &marker,
        marker_id,
        TerminatedReason::ActorStopped,
    );
    inbox.assert_drained();
}

#[test]
fn watching_an_actor_that_already_stopped_notifies_at_once() {
    let (a, _b) = two_nodes("watch-late");
    let inbox = Inbox::on(&a);
    let target = mortal_on(&a, "b");
    halt(&a, &target);

    let id = watch(&a, &target, &inbox);
    assert_fired(&inbox.next(), &target, id, TerminatedReason::ActorStopped);
    inbox.assert_drained();
}

#[test]
fn actors_on_the_watchers_own_node_are_watched_too() {
    let (a, _b) = two_nodes("watch-local");
    let inbox = Inbox::on(&a);
    let [target, unwatched] = [(); 2].map(|()| mortal_on(&a, "a"));
    assert_eq!(&target.node(), a.system().node_id());
    let id = watch(&a, &target, &inbox);
    let unwatched_id = watch(&a, &unwatched, &inbox);
    assert!(a.system().unwatch(unwatched_id));

    halt(&a, &unwatched);
    halt(&a, &target);
    assert_fired(&inbox.next(), &target, id, TerminatedReason::ActorStopped);

    // Already stopped: reported at once.
    let again = watch(&a, &target, &inbox);
    assert_fired(
        &inbox.next(),
        &target,
        again,
        TerminatedReason::ActorStopped,
    );
    inbox.assert_drained();
}

/// The watcher's transport would only give up on the silent node after two minutes, past the
/// test's deadline: the report comes from the membership layer declaring the node Down.
#[test]
fn killing_the_target_node_reports_node_down() {
    let mut patient = Timeouts::lan();
    patient.give_up_after = Duration::from_secs(120);
    let (a, b) = two_nodes_with("watch-kill", patient);
    let inbox = Inbox::on(&a);
    let [first, second] = [(); 2].map(|()| mortal_on(&a, "b"));
    let first_id = watch(&a, &first, &inbox);
    let second_id = watch(&a, &second, &inbox);

    b.kill();
    let mut got = [inbox.next(), inbox.next()];
    got.sort_by_key(|t| t.watch);
    assert_fired(&got[0], &first, first_id, TerminatedReason::NodeDown);
    assert_fired(&got[1], &second, second_id, TerminatedReason::NodeDown);
    inbox.assert_drained();

    // Watching an actor of that incarnation now fails or reports it down at once; either way
    // no watch is left waiting for a node that will never answer.
    match try_watch(&a, &first, &inbox) {
        Ok(id) => assert_fired(&inbox.next(), &first, id, TerminatedReason::NodeDown),
        Err(WatchError::Request(_)) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_graceful_leave_reports_node_left() {
    let (a, b) = two_nodes("watch-leave");
    let inbox = Inbox::on(&a);
    let target = mortal_on(&a, "b");
    let id = watch(&a, &target, &inbox);

    b.run(|s| async move { s.leave().await }).unwrap();
    assert_fired(&inbox.next(), &target, id, TerminatedReason::NodeLeft);
    inbox.assert_drained();
}

/// A client node runs no membership: its transport giving up on the silent node (after a
/// second here) is what declares it down.
#[test]
fn a_client_watcher_learns_of_a_crash_from_its_transport() {
    let (a, b) = two_nodes("watch-client");
    let mut timeouts = Timeouts::lan();
    timeouts.give_up_after = Duration::from_secs(1);
    let client = TestNode::start(
        "watch-client",
        plaintext("client")
            .node_role(NodeRole::Client)
            .seed_nodes([b.system().local_addr().to_string()])
            .timeouts(timeouts)
            .build()
            .unwrap(),
        |b| b,
    )
    .unwrap();
    let inbox = Inbox::on(&client);
    let target = client
        .run(|s| async move {
            assert!(s.wait_for_peers(1, TEST_DEADLINE).await);
            s.remote_actor::<Mortal>("b", |_| Mortal).await
        })
        .unwrap()
        .unwrap();
    let id = watch(&client, &target, &inbox);

    b.kill();
    assert_fired(&inbox.next(), &target, id, TerminatedReason::NodeDown);
    inbox.assert_drained();
    drop(a);
}

#[test]
fn watches_on_one_node_are_bounded() {
    let (a, _b) = two_nodes("watch-bound");
    let inbox = Inbox::on(&a);
    let target = mortal_on(&a, "a");
    let recipient = inbox.recipient();
    let (t, r) = (target.clone(), recipient.clone());
    let (ids, refused) = a
        .run(move |s| async move {
            let mut ids = Vec::new();
            for _ in 0..MAX_WATCHES_PER_NODE {
                ids.push(s.watch(&t, r.clone()).await.unwrap());
            }
            let refused = s.watch(&t, r.clone()).await;
            (ids, refused)
        })
        .unwrap();
    assert!(
        matches!(refused, Err(WatchError::TooManyWatches { ref node, limit })
            if node == a.system().node_id() && limit == MAX_WATCHES_PER_NODE),
        "{refused:?}"
    );
    // Unwatching one makes room for one.
    assert!(a.system().unwatch(ids[0]));
    let (t, r) = (target.clone(), recipient);
    let again = a.run(move |s| async move { s.watch(&t, r).await }).unwrap();
    assert!(again.is_ok(), "{again:?}");
}
