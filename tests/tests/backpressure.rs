//! A fast sender never grows memory past the per-node queue bound: `do_send` drops and
//! counts exactly what does not fit, `tell` waits instead of losing anything, and `try_send`
//! hands a message it cannot queue back to the caller.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{
    ClusterConfigBuilder, ClusterSystem, FailureDetectorConfig, MembershipConfig, NetworkStats,
};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{Add, Blob, Counter, Get, WaitForGate, open_gate};

const QUEUE_MESSAGES: usize = 1024;
const CLUSTER: &str = "backpressure";

/// Membership tuned for overload: these tests saturate one node's actors for seconds on
/// purpose, and membership frames from the sender wait behind the backlog at the receiver.
/// With the LAN preset a debug build on two busy cores may then suspect the receiver.
fn patient(b: ClusterConfigBuilder) -> ClusterConfigBuilder {
    b.failure_detector(FailureDetectorConfig::conservative())
        .membership(MembershipConfig::conservative())
}

/// Sender `a`, with a 1,024-message queue to each node, and `b`, whose actors have a
/// 16-message mailbox so that they fall behind at once. Returns a counter on b.
fn setup() -> (TestNode, TestNode, RemoteAddr<Counter>) {
    let b = TestNode::start(
        CLUSTER,
        patient(plaintext("b"))
            .mailbox_capacity(16)
            .build()
            .unwrap(),
        |b| b.register::<Counter>(),
    )
    .unwrap();
    let a = TestNode::start(
        CLUSTER,
        patient(plaintext("a"))
            .seed_nodes([b.system().local_addr().to_string()])
            .max_frame_size(64 * 1024)
            .send_queue(QUEUE_MESSAGES, 1 << 20)
            .build()
            .unwrap(),
        |b| b,
    )
    .unwrap();
    let counter = a
        .run(|s| async move {
            assert!(
                s.wait_for_peers(1, TEST_DEADLINE).await,
                "a never connected"
            );
            s.remote_actor::<Counter>("b", |_| Counter::default()).await
        })
        .unwrap()
        .unwrap();
    (a, b, counter)
}

fn queued_to_b(system: &ClusterSystem) -> usize {
    system
        .members()
        .iter()
        .find(|m| m.id.name() == "b")
        .map_or(0, |m| m.queued)
}

fn stats(node: &TestNode) -> NetworkStats {
    node.system().stats()
}

/// Samples a's queue to b from another thread until dropped; records the largest value.
struct QueueSampler {
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl QueueSampler {
    fn start(system: ClusterSystem) -> Self {
        let max = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (Arc::clone(&max), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(queued_to_b(&system), Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
            }
        });
        Self {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// The counter's value once a's queue to b is empty and two reads in a row agree.
fn settled_count(a: &TestNode, counter: &RemoteAddr<Counter>) -> u64 {
    let counter = counter.clone();
    let system = a.system().clone();
    a.run(move |_| async move {
        let mut last = None;
        loop {
            // A request queues behind every tell before it, so its answer counts them all.
            let now = counter.send(Get).timeout(TEST_DEADLINE).await.unwrap();
            if last == Some(now) && queued_to_b(&system) == 0 {
                return now;
            }
            last = Some(now);
        }
    })
    .unwrap()
}

#[test]
fn do_send_burst_stays_within_the_queue_bound_and_counts_every_drop() {
    const N: u64 = 1_000_000;
    let (a, _b, counter) = setup();
    let dropped_before = stats(&a).messages_dropped;
    let sampler = QueueSampler::start(a.system().clone());
    let target = counter.clone();
    let system = a.system().clone();
    let max_seen_by_sender = a
        .run(move |_| async move {
            let mut max = 0;
            for i in 0..N {
                target.do_send(Add(1));
                if i % 1000 == 0 {
                    max = max.max(queued_to_b(&system));
                }
            }
            max
        })
        .unwrap();
    let max_seen = sampler.finish().max(max_seen_by_sender);
    let processed = settled_count(&a, &counter);
    let dropped = stats(&a).messages_dropped - dropped_before;
    eprintln!("processed {processed}, dropped {dropped}, max queued {max_seen}");
    assert!(max_seen <= QUEUE_MESSAGES, "queue reached {max_seen}");
    assert_eq!(
        processed + dropped,
        N,
        "processed {processed} + dropped {dropped}"
    );
    assert!(
        dropped > 0,
        "the burst never filled the queue, so it proved nothing"
    );
    assert!(processed > 0);
}

#[test]
fn tell_burst_waits_for_room_and_loses_nothing() {
    const N: u64 = 100_000;
    let (a, _b, counter) = setup();
    let dropped_before = stats(&a).messages_dropped;
    let sampler = QueueSampler::start(a.system().clone());
    let target = counter.clone();
    a.run(move |_| async move {
        for _ in 0..N {
            target.tell(Blob(vec![0; 64])).await.unwrap();
        }
    })
    .unwrap();
    let max_seen = sampler.finish();
    let processed = settled_count(&a, &counter);
    eprintln!("processed {processed}, max queued {max_seen}");
    assert!(max_seen <= QUEUE_MESSAGES, "queue reached {max_seen}");
    assert_eq!(processed, N);
    assert_eq!(stats(&a).messages_dropped, dropped_before);
}

#[test]
fn try_send_on_a_full_queue_hands_the_message_back() {
    const GATE: &str = "backpressure-try-send";
    let (a, _b, counter) = setup();
    let target = counter.clone();
    let accepted = a
        .run(move |_| async move {
            // b's actor stops consuming, so its mailbox, the connection, the socket buffers
            // and finally a's queue fill up.
            target.tell(WaitForGate(GATE.into())).await.unwrap();
            let mut accepted = 0u64;
            loop {
                let mut ballast = vec![0xab; 16 << 10];
                ballast[..8].copy_from_slice(&accepted.to_le_bytes());
                match target.try_send(Blob(ballast)) {
                    Ok(()) => accepted += 1,
                    Err(TrySendError::Full(Blob(back))) => {
                        assert_eq!(back.len(), 16 << 10);
                        assert_eq!(back[..8], accepted.to_le_bytes(), "not the message sent");
                        return accepted;
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
                assert!(accepted < 1_000_000, "the queue never filled");
            }
        })
        .unwrap();
    assert!(
        queued_to_b(a.system()) > 0,
        "Full was reported for an empty queue"
    );
    open_gate(GATE);
    // Everything accepted is delivered, and nothing that was handed back.
    assert_eq!(settled_count(&a, &counter), accepted);
}
