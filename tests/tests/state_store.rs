//! The node's state store: where it lives by default, that it outlives a restart of a durable
//! node, and that a store given to the builder is the one the node's actors use.

use actix_cluster::state::{Expect, MemoryStore, StateStore};
use actix_cluster::{RegistryConfig, StartError};
use actix_cluster_testkit::{TestNode, TestNodeError, plaintext};

fn durable_node(name: &str, dir: &std::path::Path) -> TestNode {
    let config = plaintext(name)
        .registry(RegistryConfig::new().voters(1).durable(dir))
        .build()
        .expect("config");
    TestNode::start("st-durable", config, |b| b).expect("start")
}

#[test]
fn a_durable_node_keeps_actor_state_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = durable_node("st-d1", dir.path());
    let version = node
        .run(|s| async move {
            s.state_store()
                .put("counter/1", b"41".to_vec(), Expect::Absent, 3)
                .await
        })
        .expect("node thread")
        .expect("saved");
    assert_eq!(version, 1);
    node.stop();
    assert!(dir.path().join("state.redb").exists());

    let node = durable_node("st-d1", dir.path());
    let got = node
        .run(|s| async move { s.state_store().get("counter/1").await })
        .expect("node thread")
        .expect("read")
        .expect("still there after the restart");
    assert_eq!(
        (got.data.as_slice(), got.version, got.fence),
        (&b"41"[..], 1, 3)
    );
    node.stop();
}

#[test]
fn a_second_node_on_the_same_data_directory_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = durable_node("st-d2", dir.path());
    let config = plaintext("st-d3")
        .registry(RegistryConfig::new().voters(1).durable(dir.path()))
        .build()
        .expect("config");
    match TestNode::start("st-durable", config, |b| b) {
        Err(TestNodeError::Start(StartError::StateStorage(e) | StartError::RegistryStorage(e))) => {
            assert!(e.to_string().contains("locked"), "{e}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("two nodes opened one data directory"),
    }
    first.stop();
}

#[test]
fn a_node_keeps_state_in_the_store_it_is_given() {
    let store = MemoryStore::new();
    let given = store.clone();
    let node = TestNode::start(
        "st-given",
        plaintext("st-g1").build().expect("config"),
        move |b| b.state_store(given),
    )
    .expect("start");
    node.run(|s| async move {
        s.state_store()
            .put("p/42", b"x".to_vec(), Expect::Absent, 1)
            .await
    })
    .expect("node thread")
    .expect("saved");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let got = rt.block_on(store.get("p/42")).expect("read");
    assert_eq!(got.map(|g| g.data), Some(b"x".to_vec()));
    node.stop();
}
