//! The Redis state store against a real `redis-server` (Debian's package, which `.ci/run`
//! installs): the store contract, fencing between two nodes' clients, and a namespace per
//! cluster. Each test starts its own server on a free loopback port and stops it after.

use actix_cluster::state::{self, Expect, RedisStore, StateError, StateStore};
use actix_cluster_testkit::RedisServer;

fn server() -> RedisServer {
    RedisServer::start([127, 0, 0, 1].into()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract() {
    let server = server();
    let limit = 64 << 10;
    let store = RedisStore::connect(server.url())
        .await
        .expect("connect")
        .max_value_len(limit);
    if let Err(e) = state::conformance(&store, limit).await {
        panic!("{e}");
    }
}

#[tokio::test]
async fn an_older_activation_on_another_node_cannot_overwrite_its_successor() {
    let server = server();
    // Two nodes' connections to one server.
    let old = RedisStore::connect(server.url()).await.expect("connect");
    let new = RedisStore::connect(server.url()).await.expect("connect");
    let v = old
        .put("player/42", b"10".to_vec(), Expect::Absent, 7)
        .await
        .expect("first save");
    // The successor (registry version 9) reads and saves.
    let read = new.get("player/42").await.expect("get").expect("saved");
    new.put(
        "player/42",
        b"25".to_vec(),
        Expect::Version(read.version),
        9,
    )
    .await
    .expect("successor's save");
    // The old activation, cut off, saves again from what it read: refused.
    let stale = old.put("player/42", b"11".to_vec(), Expect::Any, 7).await;
    assert!(
        matches!(
            stale,
            Err(StateError::Fenced {
                fence: 7,
                current: 9,
                ..
            })
        ),
        "{stale:?} (first save was version {v})"
    );
    let now = new.get("player/42").await.expect("get").expect("saved");
    assert_eq!(now.data, b"25");
}

#[tokio::test]
async fn namespaces_keep_two_clusters_apart() {
    let server = server();
    let a = RedisStore::connect(server.url())
        .await
        .expect("connect")
        .namespace("cluster-a");
    let b = RedisStore::connect(server.url())
        .await
        .expect("connect")
        .namespace("cluster-b");
    a.put("k", vec![1], Expect::Absent, 1).await.expect("put");
    assert_eq!(b.get("k").await, Ok(None));
    assert_eq!(b.list("").await, Ok(Vec::new()));
    assert_eq!(a.list("").await, Ok(vec!["k".to_owned()]));
}
