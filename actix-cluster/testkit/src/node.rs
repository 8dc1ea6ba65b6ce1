//! In-process cluster nodes for tests and benchmarks: each [`TestNode`] runs its own actix
//! `System` on its own thread, as a separate process would, so several nodes share a process
//! without sharing an event loop.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_cluster::{ClusterConfig, ClusterSystem, ClusterSystemBuilder, StartError, TlsConfig};
use actix_rt::{Arbiter, ArbiterHandle, System};

use crate::{CertError, TestCa};

/// Deadline for anything a test waits on from another thread; generous, because CI machines
/// are slow, and only reached when something is broken.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// A cluster node running on a thread of its own.
#[derive(Debug)]
pub struct TestNode {
    system: ClusterSystem,
    home: ArbiterHandle,
    actix: System,
    thread: Option<JoinHandle<()>>,
}

/// Why a test node could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestNodeError {
    /// The node's `start` failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The node's thread died or did not answer within [`TEST_DEADLINE`].
    #[error("test node thread did not answer: {0}")]
    Thread(String),
}

impl TestNode {
    /// Starts a node of `cluster` with `config`; `setup` may register actor types.
    pub fn start(
        cluster: &str,
        config: ClusterConfig,
        setup: impl FnOnce(ClusterSystemBuilder) -> ClusterSystemBuilder + Send + 'static,
    ) -> Result<Self, TestNodeError> {
        let cluster = cluster.to_owned();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("node-{}", config.node_name()))
            .spawn(move || {
                let sys = System::new();
                let started = sys.block_on(async move {
                    setup(ClusterSystem::new(cluster, config))
                        .start()
                        .await
                        .map(|s| (s, Arbiter::current(), System::current()))
                });
                let ok = started.is_ok();
                let _ = tx.send(started);
                if ok {
                    let _ = sys.run();
                }
            })
            .map_err(|e| TestNodeError::Thread(e.to_string()))?;
        let (system, home, actix) = rx
            .recv_timeout(TEST_DEADLINE)
            .map_err(|e| TestNodeError::Thread(e.to_string()))??;
        Ok(Self {
            system,
            home,
            actix,
            thread: Some(thread),
        })
    }

    /// The node's handle (usable from any thread for non-actor calls such as `members`).
    pub fn system(&self) -> &ClusterSystem {
        &self.system
    }

    /// Runs `f` on the node's own arbiter and returns its result.
    pub fn run<F, Fut, R>(&self, f: F) -> Result<R, TestNodeError>
    where
        F: FnOnce(ClusterSystem) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let system = self.system.clone();
        let spawned = self.home.spawn_fn(move || {
            actix_rt::spawn(async move {
                let _ = tx.send(f(system).await);
            });
        });
        if !spawned {
            return Err(TestNodeError::Thread("node arbiter stopped".into()));
        }
        rx.recv_timeout(TEST_DEADLINE)
            .map_err(|e| TestNodeError::Thread(e.to_string()))
    }

    /// Leaves the cluster gracefully and stops the node's thread.
    pub fn stop(mut self) {
        let _ = self.run(|s| async move { s.shutdown().await });
        self.join();
    }

    /// Stops the node's threads without telling peers, as close to a crash as one process
    /// allows: the network arbiter and the actors stop, sockets close.
    pub fn kill(mut self) {
        let _ = self.run(|s| async move { s.kill_for_tests() });
        self.join();
    }

    fn join(&mut self) {
        self.actix.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.join();
        }
    }
}

/// A config builder for a node named `name` on 127.0.0.1 with an OS-chosen port.
pub fn plaintext(name: &str) -> actix_cluster::ClusterConfigBuilder {
    ClusterConfig::new()
        .node_name(name)
        .listen("127.0.0.1:0")
        .insecure_plaintext()
}

/// A config builder for a node named `name` with a certificate from `ca`.
pub fn with_tls(ca: &TestCa, name: &str) -> Result<actix_cluster::ClusterConfigBuilder, CertError> {
    let cert = ca.issue(name)?;
    let tls = TlsConfig::from_pem(
        ca.ca_pem().as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .map_err(|e| CertError::Io(std::io::Error::other(e.to_string())))?;
    Ok(ClusterConfig::new()
        .node_name(name)
        .listen("127.0.0.1:0")
        .tls(tls))
}
