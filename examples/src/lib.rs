//! Code shared by the example programs of actix-cluster.
//!
//! Each program in `src/bin/` runs as its own process, the way a real deployment does:
//!
//! - `tour` starts a three-node cluster as child processes of itself and walks through remote
//!   spawn, tell, ask, typed errors and a crashed node;
//! - `node` is one long-running cluster node hosting a [`Counter`] under the local name
//!   `counter`;
//! - `call` joins a cluster as a client and calls a node's `counter`;
//! - `ctl` joins a cluster as a client for operator commands (`ctl status`: one node's member
//!   table; `ctl register`, `ctl names`, `ctl registry`: the cluster-wide name registry);
//! - `gen-certs` writes a throwaway CA and node certificates for `--tls-dir`.
//!
//! The library part holds what several programs (and the multi-process tests) need: the
//! [`Counter`] actor, the node program itself ([`node_main`]), a small command-line parser
//! ([`args`]) and a handle on a node child process ([`process`]). See `docs/examples.md`.

pub mod args;
mod node;
pub mod process;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, MemberState, RegistryError, TlsError};
use serde::{Deserialize, Serialize};

pub use node::{
    NODE_USAGE, NodeOptions, Preset, Topology, child_or_no_arguments, node_main, run_node,
};

/// The local name under which every `node` registers its [`Counter`].
pub const COUNTER_NAME: &str = "counter";

/// A counter: the actor every example talks to.
///
/// It is an ordinary actix actor; the [`DistributedActor`] impl is all it takes to make it
/// callable, and spawnable, from other nodes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counter {
    /// Current value.
    pub n: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Adds to the counter; replies with the new value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Add(pub u64);

/// Replies with the current value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Get;

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 {
        // Saturating: `call add` takes any u64 from the command line, and a counter that
        // panics on overflow would turn a typo into a HandlerFailed error.
        self.n = self.n.saturating_add(m.0);
        self.n
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.n
    }
}

impl DistributedActor for Counter {
    const NAME: &'static str = "examples.counter";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add").handle::<Get>("get").migratable();
    }
}

/// A game player: a virtual actor (see `actix_cluster::virtual_actor`). It always exists;
/// the cluster activates `examples.player/<id>` on its first message, passivates it after
/// [`PLAYER_IDLE`] without one, and its points survive both (saved on every change).
#[derive(Debug)]
pub struct Player {
    points: PlayerPoints,
    checkpoint: actix_cluster::virtual_actor::Checkpoint<PlayerPoints>,
}

/// A [`Player`]'s saved state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PlayerPoints {
    /// Points so far.
    pub points: u64,
}

impl actix_cluster::state::PersistentState for PlayerPoints {}

/// How long a [`Player`] stays active without a message (short, so that the example shows
/// it).
pub const PLAYER_IDLE: Duration = Duration::from_secs(2);

impl Actor for Player {
    type Context = Context<Self>;
}

/// Adds points; replies with the total once it is saved, and the node that holds the player.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(u64, String), String>")]
pub struct AddPoints(pub u64);

impl Handler<AddPoints> for Player {
    type Result = ResponseFuture<Result<(u64, String), String>>;
    fn handle(&mut self, m: AddPoints, _: &mut Context<Self>) -> Self::Result {
        self.points.points = self.points.points.saturating_add(m.0);
        let total = self.points.points;
        let saved = self.checkpoint.save(&self.points);
        let node = NODE_NAME.get().cloned().unwrap_or_default();
        Box::pin(async move {
            saved.await.map_err(|e| e.to_string())?;
            Ok((total, node))
        })
    }
}

impl DistributedActor for Player {
    const NAME: &'static str = "examples.player";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<AddPoints>("add_points");
    }
}

impl actix_cluster::virtual_actor::VirtualActor for Player {
    type State = PlayerPoints;
    fn activate(
        _id: &str,
        points: PlayerPoints,
        checkpoint: actix_cluster::virtual_actor::Checkpoint<PlayerPoints>,
    ) -> Self {
        Player { points, checkpoint }
    }
    fn idle_timeout() -> Duration {
        PLAYER_IDLE
    }
}

/// This process's node name, for answers that say where they were computed.
pub static NODE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How a program secures its connections, as chosen on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Mutual TLS with the material in this directory (`ca.pem`, `node.pem`, `node.key`).
    TlsDir(std::path::PathBuf),
    /// `--insecure-plaintext`: no encryption, no authentication.
    Plaintext,
}

impl Security {
    /// Reads `--tls-dir DIR` or `--insecure-plaintext`; exactly one must be given, because
    /// silently defaulting to either would be wrong for someone.
    pub fn from_args(args: &args::Args) -> Result<Self, args::UsageError> {
        match (args.value("--tls-dir"), args.switch("--insecure-plaintext")) {
            (Some(dir), false) => Ok(Security::TlsDir(dir.into())),
            (None, true) => Ok(Security::Plaintext),
            (Some(_), true) => Err(args::UsageError::invalid(
                "--tls-dir and --insecure-plaintext exclude each other",
            )),
            (None, false) => Err(args::UsageError::invalid(
                "choose transport security: --tls-dir DIR (ca.pem, node.pem, node.key) or --insecure-plaintext",
            )),
        }
    }

    /// Applies the choice to a config builder, loading the TLS files if any.
    pub fn apply(&self, builder: ClusterConfigBuilder) -> Result<ClusterConfigBuilder, TlsError> {
        Ok(match self {
            Security::TlsDir(dir) => builder.tls(TlsConfig::from_dir(dir)?),
            Security::Plaintext => builder.insecure_plaintext(),
        })
    }
}

/// The node name of a client program (`call`, `ctl`): `explicit` if given; with TLS, the name
/// in the certificate, since peers check that the certificate names the node; otherwise
/// `<prefix>-<pid>`, unique on the host.
pub fn client_node_name(
    explicit: Option<&str>,
    security: &Security,
    prefix: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(match (explicit, security) {
        (Some(name), _) => name.to_owned(),
        (None, Security::TlsDir(dir)) => TlsConfig::from_dir(dir)?
            .certificate_names()?
            .into_iter()
            .next()
            .ok_or("the certificate names no node")?,
        (None, Security::Plaintext) => format!("{prefix}-{}", std::process::id()),
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`), so that stdout stays free for
/// what the programs print on purpose (such as `READY` lines).
pub fn init_tracing() {
    init_tracing_or("warn");
}

/// Like [`init_tracing`] with another filter for when `RUST_LOG` is not set.
pub fn init_tracing_or(default_filter: &str) {
    use std::io::IsTerminal as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft warns on every failed heartbeat to a dead voter (about 10 a second) until
        // the registry replaces it: errors only, unless RUST_LOG asks for more.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default_filter},openraft=error"))
        });
    // A second call (tour child mode reuses the node program) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Waits until `system` holds a live connection to the node named `node`; `false` if
/// `timeout` passes first.
pub async fn wait_for_node(system: &ClusterSystem, node: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let up = system
            .members()
            .iter()
            .any(|m| m.id.name() == node && m.state == MemberState::Up);
        if up {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Membership has no per-node change notification; a short poll bounded by the
        // deadline costs nothing next to a connection set-up.
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The name of a [`RegistryError`] variant, for output meant to be read next to the docs.
pub fn registry_error_kind(e: &RegistryError) -> &'static str {
    match e {
        RegistryError::NameTaken { .. } => "NameTaken",
        RegistryError::NotFound(_) => "NotFound",
        RegistryError::RestartsExhausted { .. } => "RestartsExhausted",
        RegistryError::TypeMismatch { .. } => "TypeMismatch",
        RegistryError::InvalidName { .. } => "InvalidName",
        RegistryError::NoQuorum => "NoQuorum",
        RegistryError::Timeout(_) => "Timeout",
        RegistryError::NotFormed { .. } => "NotFormed",
        RegistryError::Unavailable(_) => "Unavailable",
        RegistryError::Create(_) => "Create",
        RegistryError::Remote(_) => "Remote",
        RegistryError::SystemStopped => "SystemStopped",
        RegistryError::Refused(_) => "Refused",
        // The enum is non-exhaustive: a newer library may add variants.
        _ => "RegistryError",
    }
}

/// The name of a [`RemoteError`] variant, for output meant to be read next to the docs.
pub fn error_kind(e: &RemoteError) -> &'static str {
    match e {
        RemoteError::Timeout(_) => "Timeout",
        RemoteError::NodeUnreachable { .. } => "NodeUnreachable",
        RemoteError::NodeGone { .. } => "NodeGone",
        RemoteError::UnknownNode(_) => "UnknownNode",
        RemoteError::UnknownActor { .. } => "UnknownActor",
        RemoteError::ActorTypeMismatch { .. } => "ActorTypeMismatch",
        RemoteError::UnknownMessageType { .. } => "UnknownMessageType",
        RemoteError::ActorTypeNotRegistered { .. } => "ActorTypeNotRegistered",
        RemoteError::Encode(_) => "Encode",
        RemoteError::Decode(_) => "Decode",
        RemoteError::PayloadTooLarge { .. } => "PayloadTooLarge",
        RemoteError::ReplyEncode(_) => "ReplyEncode",
        RemoteError::ReplyDecode(_) => "ReplyDecode",
        RemoteError::ReplyTooLarge { .. } => "ReplyTooLarge",
        RemoteError::QueueFull { .. } => "QueueFull",
        RemoteError::ActorStopped => "ActorStopped",
        RemoteError::HandlerFailed(_) => "HandlerFailed",
        RemoteError::SystemStopped => "SystemStopped",
        // The enum is non-exhaustive: a newer library may add variants.
        _ => "RemoteError",
    }
}

/// Waits until `system` sees `hosts` members Up that registered `capability` (an actor type's
/// `NAME`) and a registry leader not changing its voters; an error after `deadline`.
pub async fn wait_for_hosts(
    system: &ClusterSystem,
    capability: &str,
    hosts: usize,
    deadline: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let until = Instant::now() + deadline;
    loop {
        let up = system
            .members()
            .iter()
            .filter(|m| {
                m.state == MemberState::Up && m.capabilities.iter().any(|c| c == capability)
            })
            .count();
        let leader = system
            .registry_status()
            .await
            .is_ok_and(|s| s.leader.is_some() && !s.changing_voters);
        if up == hosts && leader {
            return Ok(());
        }
        if Instant::now() > until {
            return Err("the cluster did not form in time".into());
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
