//! Every way a remote call can fail surfaces as its own typed `RemoteError`, and a failure
//! in one actor leaves the node serving the others.

#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{
    ClusterConfigBuilder, FailureDetectorConfig, MembershipConfig, NetworkStats, Timeouts,
};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{
    Add, AddReadAsText, AddUnencodable, Blob, Counter, Delay, Explode, Get, MisreadCounter,
    NewerCounter, Recorder, Seen, Seq, Sleep, Undeclared, wait_until,
};

/// Caller `a` and callee `b`, connected; both can host `Counter`s, neither a `Recorder`.
fn pair(cluster: &str, a: ClusterConfigBuilder) -> (TestNode, TestNode) {
    let b = TestNode::start(cluster, plaintext("b").build().unwrap(), |b| {
        b.register::<Counter>()
    })
    .unwrap();
    let seed = b.system().local_addr().to_string();
    let a = TestNode::start(
        cluster,
        a.node_name("a").seed_nodes([seed]).build().unwrap(),
        |b| b.register::<Counter>(),
    )
    .unwrap();
    let up = a
        .run(|s| async move { s.wait_for_peers(1, TEST_DEADLINE).await })
        .unwrap();
    assert!(up, "a never connected to b");
    (a, b)
}

fn stats(node: &TestNode) -> NetworkStats {
    node.system().stats()
}

/// Starts a counter on b registered there as `counter`.
fn named_counter(b: &TestNode) {
    b.run(|s| async move {
        let c = s.start_actor(Counter { n: 5 });
        s.register_local_name("counter", &c)
    })
    .unwrap()
    .unwrap();
}

#[test]
fn unknown_actor_name_is_unknown_actor() {
    let (a, b) = pair("unknown-actor", plaintext("a"));
    named_counter(&b);
    let err = a
        .run(|s| async move { s.actor_on::<Counter>("b", "nobody").await.map(|_| ()) })
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RemoteError::UnknownActor {
            node: "b".into(),
            actor: "nobody".into()
        }
    );
}

#[test]
fn name_of_an_actor_of_another_type_is_actor_type_mismatch() {
    let (a, b) = pair("type-mismatch", plaintext("a"));
    b.run(|s| async move {
        let r = s.start_actor(Recorder::default());
        s.register_local_name("recorder", &r)
    })
    .unwrap()
    .unwrap();
    let err = a
        .run(|s| async move { s.actor_on::<Counter>("b", "recorder").await.map(|_| ()) })
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RemoteError::ActorTypeMismatch {
            node: "b".into(),
            actor: "recorder".into(),
            expected: "tests.counter".into(),
            found: "tests.recorder".into(),
        }
    );
}

#[test]
fn spawning_a_type_the_target_did_not_register_is_actor_type_not_registered() {
    let (a, b) = pair("not-registered", plaintext("a"));
    let err = a
        .run(|s| async move {
            s.remote_actor::<Recorder>("b", |_| Recorder::default())
                .await
                .map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RemoteError::ActorTypeNotRegistered {
            node: "b".into(),
            actor_type: "tests.recorder".into()
        }
    );
    assert_eq!(
        b.system().local_actor_count(),
        0,
        "nothing was started on b"
    );
}

#[test]
fn message_not_declared_in_messages_is_refused_before_sending() {
    let (a, b) = pair("undeclared-local", plaintext("a"));
    named_counter(&b);
    let counter = a
        .run(|s| async move { s.actor_on::<Counter>("b", "counter").await })
        .unwrap()
        .unwrap();
    let sent_before = stats(&a).messages_sent;
    let dropped_before = stats(&a).messages_dropped;
    let (send, try_send) = a
        .run(move |_| async move {
            let send = counter.send(Undeclared).await;
            let try_send = match counter.try_send(Undeclared) {
                Err(TrySendError::Failed(Undeclared, e)) => Ok(e),
                other => Err(format!("{other:?}")),
            };
            counter.do_send(Undeclared);
            (send, try_send)
        })
        .unwrap();
    assert!(
        matches!(send, Err(RemoteError::UnknownMessageType { ref actor_type, node: None, .. }) if actor_type == "tests.counter"),
        "{send:?}"
    );
    let text = send.unwrap_err().to_string();
    assert!(
        text.contains("m.handle::<Undeclared>(") && text.contains("messages() of tests.counter"),
        "the error names the message and the line to add: {text}"
    );
    assert!(
        matches!(try_send, Ok(RemoteError::UnknownMessageType { .. })),
        "{try_send:?}"
    );
    assert_eq!(
        stats(&a).messages_dropped,
        dropped_before + 1,
        "do_send counts its drop"
    );
    assert_eq!(
        stats(&a).messages_sent,
        sent_before,
        "nothing went on the wire"
    );
}

#[test]
fn message_the_receiving_build_does_not_know_is_unknown_message_type() {
    actix_cluster_tests::logs::capture();
    let (a, b) = pair("undeclared-remote", plaintext("a"));
    named_counter(&b);
    let (unknown, added) = a
        .run(|s| async move {
            // a runs a newer build of the counter that declares one more message than b's.
            let counter = s.actor_on::<NewerCounter>("b", "counter").await.unwrap();
            let unknown = counter.send(Undeclared).await;
            (unknown, counter.send(Add(1)).await)
        })
        .unwrap();
    // b knows the message only by its id; a, which sent it, knows its name.
    assert_eq!(
        unknown,
        Err(RemoteError::UnknownMessageType {
            actor_type: "tests.counter".into(),
            message: "undeclared".into(),
            rust_type: Some("Undeclared".into()),
            node: Some("b".into()),
        })
    );
    let text = unknown.unwrap_err().to_string();
    assert!(
        text.contains(r#"does not handle message "undeclared""#)
            && text.contains(
                r#"add m.handle::<Undeclared>("undeclared") to the messages() of tests.counter"#
            )
            && text.contains("node b"),
        "the error names the message, the node and the line to add: {text}"
    );
    assert_eq!(
        added,
        Ok(6),
        "the actor still handles the messages both builds know"
    );
    // The receiving node's log names the message too: it asked the sender for the name.
    let warned = || {
        actix_cluster_tests::logs::warnings(&[
            r#"tests.counter received message "undeclared" (Undeclared) from node a"#,
            r#"add m.handle::<Undeclared>("undeclared") to the messages() of tests.counter"#,
        ])
    };
    assert!(
        wait_until(TEST_DEADLINE, || !warned().is_empty()),
        "b's warning does not name the message: {:#?}",
        actix_cluster_tests::logs::warnings(&["tests.counter received message"])
    );
    assert_eq!(warned().len(), 1, "once per message");
}

#[test]
fn panicking_handler_is_handler_failed_and_the_node_keeps_serving() {
    let (a, _b) = pair("panic", plaintext("a"));
    let (exploded, other, after, fresh) = a
        .run(|s| async move {
            let doomed = s.remote_actor::<Counter>("b", |_| Counter { n: 1 }).await?;
            let bystander = s.remote_actor::<Counter>("b", |_| Counter { n: 2 }).await?;
            let exploded = doomed.send(Explode).await;
            let other = bystander.send(Add(1)).await?;
            let after = doomed.send(Get).await;
            let fresh = s.remote_actor::<Counter>("b", |_| Counter { n: 3 }).await?;
            Ok::<_, RemoteError>((exploded, other, after, fresh.send(Get).await?))
        })
        .unwrap()
        .unwrap();
    assert!(
        matches!(exploded, Err(RemoteError::HandlerFailed(_))),
        "{exploded:?}"
    );
    assert_eq!(other, 3, "another actor on the same node still answers");
    assert!(
        matches!(after, Err(RemoteError::UnknownActor { .. })),
        "the panicked actor is gone: {after:?}"
    );
    assert_eq!(fresh, 3, "the node still spawns actors");
}

#[test]
fn reply_slower_than_the_call_timeout_is_timeout() {
    let (a, _b) = pair("timeout", plaintext("a"));
    let (slow, next) = a
        .run(|s| async move {
            let counter = s.remote_actor::<Counter>("b", |_| Counter { n: 9 }).await?;
            let slow = counter
                .send(Sleep(Duration::from_millis(600)))
                .timeout(Duration::from_millis(50))
                .await;
            // The late reply must be discarded, not taken for the next request's.
            let next = counter.send(Get).timeout(TEST_DEADLINE).await?;
            Ok::<_, RemoteError>((slow, next))
        })
        .unwrap()
        .unwrap();
    assert_eq!(slow, Err(RemoteError::Timeout(Duration::from_millis(50))));
    assert_eq!(next, 9);
}

#[test]
fn payload_above_max_frame_size_is_payload_too_large_and_nothing_is_sent() {
    let (a, _b) = pair(
        "too-large",
        plaintext("a")
            .max_frame_size(4096)
            .send_queue(1024, 1 << 20)
            .compression_threshold(None),
    );
    let counter = a
        .run(|s| async move { s.remote_actor::<Counter>("b", |_| Counter { n: 0 }).await })
        .unwrap()
        .unwrap();
    let sent_before = stats(&a).messages_sent;
    let dropped_before = stats(&a).messages_dropped;
    let (send, tell, try_send, fits) = a
        .run(move |_| async move {
            let big = || Blob(vec![7; 8192]);
            let send = counter.send(big()).await;
            let tell = counter.tell(big()).await;
            let try_send = match counter.try_send(big()) {
                Err(TrySendError::Failed(Blob(bytes), e)) => Ok((bytes.len(), e)),
                other => Err(format!("{other:?}")),
            };
            counter.do_send(big());
            let fits = counter.send(Blob(vec![7; 1024])).await;
            (send, tell, try_send, fits)
        })
        .unwrap();
    let too_large = |e: &RemoteError| matches!(e, RemoteError::PayloadTooLarge { size, limit: 4096 } if *size > 4096);
    assert!(send.as_ref().is_err_and(too_large), "{send:?}");
    assert!(
        send.as_ref().is_err_and(RemoteError::is_not_delivered),
        "an oversized request never reaches the handler: {send:?}"
    );
    assert!(tell.as_ref().is_err_and(too_large), "{tell:?}");
    match try_send {
        Ok((8192, e)) => assert!(too_large(&e), "{e:?}"),
        other => panic!("try_send must hand the message back: {other:?}"),
    }
    assert_eq!(
        stats(&a).messages_dropped,
        dropped_before + 1,
        "do_send counts its drop"
    );
    assert_eq!(fits, Ok(1), "only the message that fits reached the actor");
    assert_eq!(
        stats(&a).messages_sent,
        sent_before + 1,
        "only the message that fits was written"
    );
}

#[test]
fn request_in_flight_to_a_killed_node_fails_with_node_gone_before_its_timeout() {
    request_in_flight_to_a_killed_node("node-gone", false);
}

/// An in-process kill must look like a crash to the peers even while a handle on the killed
/// node stays alive (here its `ClusterSystem`; in the benchmarks, addresses of its actors):
/// the fault-injection build keeps a second handle on every socket, which once kept the
/// killed node's connections open, so its peers saw no crash until an idle timeout.
#[test]
fn a_killed_node_looks_crashed_to_its_peers_while_a_handle_on_it_is_held() {
    request_in_flight_to_a_killed_node("node-gone-held", true);
}

/// Kills `b` while `a` waits for a reply from it, holding a clone of `b`'s system through the
/// kill when `hold` is set; the request must fail with `NodeGone` long before its timeout.
fn request_in_flight_to_a_killed_node(cluster: &str, hold: bool) {
    // Failure detection that takes far longer than the test waits: only the connection's end
    // can fail the request in time.
    let mut detector = FailureDetectorConfig::lan();
    detector.acceptable_pause = Duration::from_secs(120);
    let mut membership = MembershipConfig::lan();
    membership.suspect_to_down = Duration::from_secs(120);
    // Nor may a silent connection be given up on: b must be seen to close it.
    let mut timeouts = Timeouts::lan();
    timeouts.idle_timeout = Duration::from_secs(120);
    timeouts.request = Duration::from_secs(30);
    let (a, b) = pair(
        cluster,
        plaintext("a")
            .timeouts(timeouts)
            .failure_detector(detector)
            .membership(membership),
    );
    let counter = a
        .run(|s| async move { s.remote_actor::<Counter>("b", |_| Counter { n: 0 }).await })
        .unwrap()
        .unwrap();
    let b_id = counter.node().clone();
    let sent_before = stats(&a).messages_sent;
    let (tx, rx) = mpsc::channel();
    a.run(move |_| async move {
        actix_rt::spawn(async move {
            let _ = tx.send(counter.send(Delay(Duration::from_secs(60))).await);
        });
    })
    .unwrap();
    assert!(
        wait_until(TEST_DEADLINE, || stats(&a).messages_sent > sent_before),
        "the request never left a"
    );
    let held = hold.then(|| b.system().clone());
    b.kill();
    // A correctness deadline, well below the 30 s request timeout and the 20 s idle timeout:
    // the request must fail because the connection dropped, not because it timed out.
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the request was still pending 10 s after its node was killed");
    assert_eq!(result, Err(RemoteError::NodeGone { node: b_id }));
    drop(held);
}

#[test]
fn unknown_node_name_is_unknown_node() {
    let (a, _b) = pair("unknown-node", plaintext("a"));
    let (resolve, spawn) = a
        .run(|s| async move {
            let resolve = s
                .actor_on::<Counter>("nowhere", "counter")
                .await
                .map(|_| ());
            let spawn = s
                .remote_actor::<Counter>("nowhere", |_| Counter::default())
                .await
                .map(|_| ());
            (resolve, spawn)
        })
        .unwrap();
    assert_eq!(resolve, Err(RemoteError::UnknownNode("nowhere".into())));
    assert_eq!(spawn, Err(RemoteError::UnknownNode("nowhere".into())));
}

#[test]
fn reply_above_the_callers_frame_limit_fails_only_that_request() {
    let (a, b) = pair(
        "reply-too-large",
        plaintext("a")
            .max_frame_size(4096)
            .send_queue(1024, 1 << 20),
    );
    b.run(|s| async move {
        let r = s.start_actor(Recorder::default());
        s.register_local_name("recorder", &r)
    })
    .unwrap()
    .unwrap();
    let (seen, bystander, request) = a
        .run(|s| async move {
            let recorder = s.actor_on::<Recorder>("b", "recorder").await.unwrap();
            let counter = s
                .remote_actor::<Counter>("b", |_| Counter::default())
                .await
                .unwrap();
            // 3,000 numbers of 3 varint bytes: a reply of ~9 KB, above a's 4 KiB limit.
            for i in 0..3000u64 {
                recorder.tell(Seq(100_000 + i)).await.unwrap();
            }
            let in_flight = counter.send(Delay(Duration::from_millis(300)));
            let in_flight = actix_rt::spawn(async move { in_flight.await });
            let seen = recorder.send(Seen).await.map(|v| v.len());
            // A request of the same size, for comparison.
            let request = counter.send(Blob(vec![7; 9000])).await;
            (seen, in_flight.await.unwrap(), request)
        })
        .unwrap();
    let Err(seen) = seen else {
        panic!("the oversized reply arrived: {seen:?}")
    };
    assert!(
        matches!(seen, RemoteError::ReplyTooLarge { size, limit: 4096 } if size > 4096),
        "{seen:?}"
    );
    assert!(
        seen.to_string().starts_with("the reply of ")
            && seen
                .to_string()
                .ends_with("exceeds this node's frame limit of 4096; the handler ran"),
        "{seen}"
    );
    assert!(
        !seen.is_not_delivered(),
        "the handler ran: a retry would run it again"
    );
    let request = request.unwrap_err();
    assert!(
        matches!(request, RemoteError::PayloadTooLarge { .. }),
        "{request:?}"
    );
    assert!(request.is_not_delivered());
    assert_ne!(
        seen.to_string().split(" bytes").nth(1),
        request.to_string().split(" bytes").nth(1),
        "an oversized reply and an oversized request read differently"
    );
    assert_eq!(
        bystander,
        Ok(()),
        "an unrelated request in flight must not fail"
    );
}

#[test]
fn reply_the_receiver_cannot_encode_is_reply_encode_after_the_handler_ran() {
    let (a, b) = pair("reply-encode", plaintext("a"));
    named_counter(&b);
    let (failed, after) = a
        .run(|s| async move {
            let counter = s.actor_on::<Counter>("b", "counter").await.unwrap();
            let failed = counter.send(AddUnencodable(10)).await.map(|_| ());
            (failed, counter.send(Get).await)
        })
        .unwrap();
    let err = failed.unwrap_err();
    assert!(matches!(err, RemoteError::ReplyEncode(_)), "{err:?}");
    assert!(
        err.to_string().contains("refuses to be encoded"),
        "the encoder's reason reaches the caller: {err}"
    );
    assert!(
        !err.is_not_delivered(),
        "the handler ran: a retry would run it again"
    );
    assert_eq!(after, Ok(15), "the handler's effect is visible");
}

#[test]
fn reply_the_caller_cannot_decode_is_reply_decode_after_the_handler_ran() {
    let (a, b) = pair("reply-decode", plaintext("a"));
    named_counter(&b);
    let (failed, after) = a
        .run(|s| async move {
            // a's build expects text back from "add"; b's counter answers a number.
            let misread = s.actor_on::<MisreadCounter>("b", "counter").await.unwrap();
            let failed = misread.send(AddReadAsText(1)).await;
            let counter = s.actor_on::<Counter>("b", "counter").await.unwrap();
            (failed, counter.send(Get).await)
        })
        .unwrap();
    let err = failed.unwrap_err();
    assert!(matches!(err, RemoteError::ReplyDecode(_)), "{err:?}");
    assert!(
        !err.is_not_delivered(),
        "the handler ran: a retry would run it again"
    );
    assert_eq!(after, Ok(6), "the handler's effect is visible");
}

/// A request issued while its node has no connection waits in the send queue; when
/// membership declares the node down, the queue is dropped and the request fails with
/// `NodeUnreachable`: it was never written, so a retry cannot duplicate it (`NodeGone` would
/// say it may have been handled).
#[test]
fn request_queued_for_a_disconnected_node_fails_unreachable_when_the_node_is_declared_down() {
    // Down comes seconds after the cut, long after the request is queued.
    let mut membership = MembershipConfig::lan();
    membership.suspect_to_down = Duration::from_secs(4);
    let mut timeouts = Timeouts::lan();
    timeouts.request = Duration::from_secs(60);
    timeouts.give_up_after = Duration::from_secs(120);
    let (a, b) = pair(
        "never-written",
        plaintext("a").timeouts(timeouts).membership(membership),
    );
    named_counter(&b);
    let counter = a
        .run(|s| async move { s.actor_on::<Counter>("b", "counter").await })
        .unwrap()
        .unwrap();
    let member_b = |a: &TestNode| {
        a.system()
            .members()
            .into_iter()
            .find(|m| m.id.name() == "b")
    };
    a.system().faults().block("b");
    assert!(
        wait_until(TEST_DEADLINE, || member_b(&a).is_some_and(|m| !m.connected)),
        "a never noticed the cut"
    );
    let (tx, rx) = mpsc::channel();
    a.run(move |_| async move {
        actix_rt::spawn(async move {
            let _ = tx.send(counter.send(Add(1)).await);
        });
    })
    .unwrap();
    // Observed queued, so it was queued before the node was declared down (after that, a
    // send fails at once and queues nothing).
    assert!(
        wait_until(TEST_DEADLINE, || member_b(&a)
            .is_some_and(|m| m.queued == 1)),
        "the request was not queued"
    );
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the queued request was still pending 30 s after the cut");
    let err = result.unwrap_err();
    assert!(
        matches!(err, RemoteError::NodeUnreachable { ref node } if node == "b"),
        "{err:?}"
    );
    assert!(err.is_not_delivered(), "it was never written");
    assert_eq!(
        member_b(&a).map(|m| m.state),
        Some(MemberState::Down),
        "the queue was dropped because b was declared down"
    );
}
