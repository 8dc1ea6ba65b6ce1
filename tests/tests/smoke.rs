//! Two nodes in one process find each other and exchange typed messages.

use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster_testkit::{TestNode, plaintext};
use actix_cluster_tests::{Add, Counter, Get};

#[test]
fn remote_spawn_and_typed_reply() {
    let a = TestNode::start("smoke", plaintext("a").build().expect("config"), |b| {
        b.register::<Counter>()
    })
    .expect("node a");
    let seed = a.system().local_addr().to_string();
    let b = TestNode::start(
        "smoke",
        plaintext("b").seed_nodes([seed]).build().expect("config"),
        |b| b.register::<Counter>(),
    )
    .expect("node b");
    let result = b
        .run(|s| async move {
            assert!(
                s.wait_for_peers(1, Duration::from_secs(10)).await,
                "b never connected to a"
            );
            let there = s
                .remote_actor::<Counter>("a", |_| Counter { n: 10 })
                .await?;
            assert_eq!(there.node().name(), "a");
            let v = there.send(Add(5)).await?;
            there.do_send(Add(1));
            let w = there.send(Get).await?;
            Ok::<_, RemoteError>((v, w))
        })
        .expect("run");
    assert_eq!(result, Ok((15, 16)));
    b.stop();
    a.stop();
}
