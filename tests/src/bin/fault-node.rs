//! `fault-node`: one cluster node of the fault-injection harness, driven over stdin/stdout.
//!
//! The harness runs one per host, sends registry operations on stdin and records the answers
//! as a history that a checker tests for linearizability. Everything here serves that
//! checker: each operation gets exactly one answer, and an answer says `fail` only when the
//! library promises that nothing was applied.
//!
//! # Protocol
//!
//! Once the node is up it prints one line and flushes:
//!
//! ```text
//! READY <node> <incarnation> <listen-addr> <id0>,<id1>,...
//! ```
//!
//! with the node's [`NodeId`], the address it actually bound and the actor ids of its slot
//! actors (one [`Counter`] per slot), in slot order. Then it reads one command per line:
//!
//! ```text
//! <op-id> register <name> <slot>          register_name(name, slot)
//! <op-id> register-or-get <name> <slot>   register_name_or_get(name, || slot)
//! <op-id> unregister <name>               unregister_name(name)
//! <op-id> lookup <name>                   lookup_linearizable::<Counter>(name)
//! ```
//!
//! Every command runs concurrently with the others and is answered, in completion order, by
//! exactly one line written in one piece:
//!
//! ```text
//! <op-id> ok bound <node> <incarnation> <actor-id>     register, register-or-get, lookup
//! <op-id> ok released <node> <incarnation> <actor-id>  unregister ended this binding
//! <op-id> ok none                                      unregister: nothing was registered
//! <op-id> fail <Kind> <message>                        definitely not applied
//! <op-id> info <Kind> <message>                        may or may not have been applied
//! <op-id or -> error <reason>                          malformed line: nothing was attempted
//! ```
//!
//! `<op-id> status` answers `<op-id> ok status <leader or -> <voters, comma-separated>`. Besides
//! answers, the node prints `- down <node> <incarnation>` whenever its membership declares a
//! member Down or Left: the registry releases that incarnation's names, so the harness's
//! checker allows those releases from then on.
//!
//! Supervised actors (the self-healing workload):
//!
//! ```text
//! <op-id> spawn <name>    spawn a Keeper named <name>, RoundRobin, restart policy Always
//!                         -> <op-id> ok spawned <node> <incarnation> <actor-id>
//! <op-id> ping <name>     ask the Keeper named <name> (through this node's replica) which
//!                         activation it is; it counts the pings it handled (its state,
//!                         which moves with it) -> <op-id> ok pong <node> <incarnation> <seq>
//!                         <count>
//! <op-id> migrate <name> <node>
//!                         move the Keeper named <name> to node <node>
//!                         -> <op-id> ok migrated <node> <incarnation> <actor-id>
//! ```
//!
//! and every Keeper that starts or stops in this process prints
//! `- act start|stop <name> <node> <incarnation> <seq>` (`seq` numbers this process's
//! activations), the ledger the harness checks single activation against; a Keeper started
//! from another's state (migrated, or restarted from a migrated state) adds
//! `from <node> <incarnation> <seq>` of that one to its start line.
//!
//! `<Kind>` names the [`RegistryError`] variant (`registry_error_kind`); a `fail NameTaken`
//! message starts with the holder's node name. A command that the node could not finish
//! because it was stopping is answered with kind `Shutdown` (`info` for writes, `fail` for
//! lookups and for commands never started).
//!
//! End of stdin, SIGTERM or ctrl-c stop the node: it stops taking commands, waits (for a
//! bounded time) for the ones in flight, leaves the cluster and exits 0. Logs go to stderr
//! (`RUST_LOG`, default `warn`); stdout carries the protocol only.

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::placement::{Placement, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{
    ClusterEvent, MemberState, MigrateError, RegistryConfig, RegistryError, SpawnError,
};
use actix_cluster_examples::args::{Args, UsageError};
use actix_cluster_examples::{Topology, registry_error_kind};
use actix_cluster_tests::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

const USAGE: &str = "\
usage: fault-node --name NAME --listen IP:PORT --cluster NAME [--seeds IP:PORT,...]
                  [--data-dir DIR] [--voters N] [--bootstrap-expect N]
                  [--architecture decentralized|centralized] [--role worker|master]
                  [--masters IP:PORT,...] [--slots N]

One cluster node (plaintext, LAN timing) for the fault-injection harness. It starts N
Counter actors (slots, default 4), prints
  READY <name> <incarnation> <listen-addr> <id0>,<id1>,...
and then runs registry commands read from stdin, one per line, each answered by one line:
  <op-id> register <name> <slot>          <op-id> ok bound <node> <incarnation> <actor-id>
  <op-id> register-or-get <name> <slot>   <op-id> ok bound <node> <incarnation> <actor-id>
  <op-id> unregister <name>               <op-id> ok released <node> <incarnation> <actor-id>
                                          <op-id> ok none
  <op-id> lookup <name>                   <op-id> ok bound <node> <incarnation> <actor-id>
  <op-id> spawn <name>                    <op-id> ok spawned <node> <incarnation> <actor-id>
  <op-id> ping <name>                     <op-id> ok pong <node> <incarnation> <seq> <count>
  <op-id> migrate <name> <node>           <op-id> ok migrated <node> <incarnation> <actor-id>
  <op-id> vadd <account> <n>              <op-id> ok applied <count>
  <op-id> vget <account>                  <op-id> ok ops <n>,<n>,... (or -)
or by <op-id> fail <Kind> <message> (definitely not applied), <op-id> info <Kind> <message>
(maybe applied), <op-id or -> error <reason> (malformed line). End of stdin, SIGTERM or
ctrl-c: answer what is in flight (bounded), leave the cluster, exit 0.

  --name NAME             node name
  --listen IP:PORT        address to listen on; port 0 picks a free one (see READY)
  --cluster NAME          cluster name, checked in the handshake
  --seeds LIST            comma-separated addresses of nodes to join
  --data-dir DIR          durable registry state in DIR (default: in memory)
  --voters N              registry voters: 1, 3 (default), 5 or 7
  --bootstrap-expect N    members that must be up before the registry forms
  --architecture A        decentralized (default) or centralized
  --role ROLE             worker (default) or master (centralized only)
  --masters LIST          addresses of the masters (centralized only, required there)
  --slots N               Counter actors to start, 1 to 1024 (default 4)
  --state-redis URL       keep virtual actor state (the Account workload) in this Redis
                          server, shared by the nodes (default: the node's own store)";

/// Longest command line taken, in bytes; names are at most 512 bytes, so anything longer is
/// a harness bug, refused without buffering it.
const MAX_LINE: usize = 4096;
/// Lines read ahead of the dispatcher. The dispatcher only parses and spawns, so this fills
/// only if the arbiter stalls, and then the reader waits rather than buffering without limit.
const LINE_QUEUE: usize = 1024;
/// Longest name echoed back in an error reason.
const ECHO_LEN: usize = 64;

/// Everything the command line says.
#[derive(Debug, Clone)]
struct Options {
    name: String,
    listen: String,
    cluster: String,
    seeds: Vec<String>,
    architecture: Architecture,
    role: NodeRole,
    masters: Vec<SocketAddr>,
    registry: RegistryConfig,
    slots: usize,
    state_redis: Option<String>,
}

impl Options {
    fn parse<I, S>(argv: I) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args = Args::parse(
            argv,
            &[
                "--name",
                "--listen",
                "--cluster",
                "--seeds",
                "--data-dir",
                "--voters",
                "--bootstrap-expect",
                "--architecture",
                "--role",
                "--masters",
                "--slots",
                "--state-redis",
            ],
            &[],
        )?;
        if let Some(extra) = args.positionals().first() {
            return Err(UsageError::invalid(format!(
                "unexpected argument {extra:?}"
            )));
        }
        let Topology {
            architecture,
            role,
            masters,
        } = Topology::from_args(&args)?;

        let mut registry = RegistryConfig::new();
        if let Some(voters) = args.parsed::<usize>("--voters")? {
            registry = registry.voters(voters);
        }
        if let Some(expect) = args.parsed::<usize>("--bootstrap-expect")? {
            registry = registry.bootstrap_expect(expect);
        }
        registry = match args.value("--data-dir") {
            Some("") => return Err(UsageError::invalid("--data-dir needs a directory")),
            Some(dir) => registry.durable(PathBuf::from(dir)),
            None => registry.ephemeral(),
        };
        // The library's own rule, checked here so that a bad count is a usage error (exit 2).
        registry
            .validate()
            .map_err(|e| UsageError::invalid(format!("--voters/--bootstrap-expect: {e}")))?;

        let slots = args.parsed::<usize>("--slots")?.unwrap_or(4);
        if !(1..=1024).contains(&slots) {
            return Err(UsageError::invalid(format!(
                "--slots {slots}: must be from 1 to 1024"
            )));
        }
        Ok(Options {
            name: args.required("--name")?.to_owned(),
            listen: args.required("--listen")?.to_owned(),
            cluster: args.required("--cluster")?.to_owned(),
            seeds: args.list("--seeds"),
            architecture,
            role,
            masters,
            registry,
            slots,
            state_redis: args.value("--state-redis").map(str::to_owned),
        })
    }
}

fn main() -> ExitCode {
    actix_cluster_examples::init_tracing();
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => return e.report(USAGE),
    };
    match actix_rt::System::new().block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fault-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), Box<dyn Error>> {
    let mut builder = ClusterConfig::lan()
        .node_name(&options.name)
        .listen(&options.listen)
        .seed_nodes(options.seeds.iter().cloned())
        .architecture(options.architecture)
        .node_role(options.role)
        .registry(options.registry.clone())
        .insecure_plaintext();
    if !options.masters.is_empty() {
        builder = builder.master_nodes(options.masters.iter().map(ToString::to_string));
    }
    let config = builder.build()?;
    // Every command is bounded by the registry's request timeout, twice for the two-step
    // ones (register-or-get claims, then binds; a linearizable lookup confirms the leader,
    // then waits for its replica): past that, waiting longer would not produce an answer.
    let drain = config.registry().request_timeout * 2 + Duration::from_secs(1);
    // Installed before READY, so that a signal right after READY never kills the node
    // without its answers.
    let mut signals = Signals::install()?;

    let mut builder = ClusterSystem::new(&options.cluster, config)
        .register::<Counter>()
        .register::<Keeper>()
        .register_virtual::<Account>();
    if let Some(url) = &options.state_redis {
        builder = builder.state_store(actix_cluster::state::RedisStore::connect(url).await?);
    }
    let system = builder.start().await?;
    let _ = ME.set(format!(
        "{} {}",
        system.node_id().name(),
        system.node_id().incarnation()
    ));
    let slots: Vec<RemoteAddr<Counter>> = (0..options.slots)
        .map(|_| system.start_actor(Counter::default()))
        .collect();

    system.subscribe(DownWatcher.start().recipient());
    let ids: Vec<String> = slots.iter().map(|s| s.actor_id().to_string()).collect();
    let me = system.node_id();
    emit(&format!(
        "READY {} {} {} {}",
        me.name(),
        me.incarnation(),
        system.local_addr(),
        ids.join(",")
    ))?;

    let (tx, mut lines) = mpsc::channel(LINE_QUEUE);
    // A blocking read needs its own thread; it ends with the process.
    std::thread::Builder::new()
        .name("stdin-commands".into())
        .spawn(move || read_lines(std::io::stdin().lock(), &tx))?;

    let node = Rc::new(Node {
        system: system.clone(),
        slots,
        in_flight: Default::default(),
        idle: Notify::new(),
    });

    let mut stdin_open = true;
    let reason = loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => node.handle(line),
                None => {
                    stdin_open = false;
                    break "end of stdin";
                }
            },
            name = signals.recv() => break name,
        }
    };
    tracing::info!(node = %options.name, reason, "stopping: answering commands in flight");

    // Drain: commands in flight get their real answers while they come within `drain`;
    // lines still arriving are refused; a signal (a second one, or one after end of stdin)
    // cuts the wait short.
    let deadline = tokio::time::Instant::now() + drain;
    while !node.is_idle() {
        tokio::select! {
            () = node.idle.notified() => {}
            line = lines.recv(), if stdin_open => match line {
                Some(line) => node.refuse(line),
                None => stdin_open = false,
            },
            name = signals.recv() => {
                tracing::info!(node = %options.name, signal = name, "not waiting any longer");
                break;
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    node.abandon_all();
    system.shutdown().await;
    Ok(())
}

/// SIGINT and SIGTERM (ctrl-c elsewhere), each received as often as it comes.
struct Signals {
    #[cfg(unix)]
    int: actix_rt::signal::unix::Signal,
    #[cfg(unix)]
    term: actix_rt::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The name of the next signal.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = actix_rt::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

/// Writes one protocol line to stdout in a single write and flushes it: a pipe is block
/// buffered, and the harness reads answers as they come.
///
/// A blocking write on the arbiter is deliberate: if the harness stops reading, answers wait
/// for it rather than pile up in memory. The node's network I/O runs on its own threads.
fn emit(line: &str) -> std::io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(buf.as_bytes())?;
    out.flush()
}

fn answer(line: &str) {
    if let Err(e) = emit(line) {
        tracing::warn!(error = %e, line, "could not write an answer to stdout");
    }
}

/// One line from stdin, at most [`MAX_LINE`] bytes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawLine {
    bytes: Vec<u8>,
    /// The line was longer; `bytes` holds its beginning.
    truncated: bool,
}

/// Sends each line of `input` to `tx` until end of file, a read error (both mean "stop"), or
/// the receiver is gone.
fn read_lines(mut input: impl BufRead, tx: &mpsc::Sender<RawLine>) {
    loop {
        match read_line(&mut input, MAX_LINE) {
            Ok(Some(line)) => {
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin failed; taking it as end of input");
                return;
            }
        }
    }
}

/// The next line of `input` without its `\n` (a last line without one counts), keeping at most
/// `max` bytes of it; `None` at end of input.
fn read_line(input: &mut impl BufRead, max: usize) -> std::io::Result<Option<RawLine>> {
    let mut line = RawLine {
        bytes: Vec::new(),
        truncated: false,
    };
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(line));
        }
        any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        let room = max - line.bytes.len();
        if chunk.len() > room {
            line.truncated = true;
        }
        line.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = end.map_or(buf.len(), |i| i + 1);
        input.consume(used);
        if end.is_some() {
            return Ok(Some(line));
        }
    }
}

/// Prints `- down <node> <incarnation>` for every member this node sees go Down or Left.
struct DownWatcher;

impl Actor for DownWatcher {
    type Context = Context<Self>;
}

impl Handler<ClusterEvent> for DownWatcher {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        let gone = match &event {
            ClusterEvent::Snapshot(members) => members
                .iter()
                .filter(|m| matches!(m.state, MemberState::Down | MemberState::Left))
                .collect(),
            ClusterEvent::MemberDown(m) | ClusterEvent::MemberLeft(m) => vec![m],
            _ => Vec::new(),
        };
        for m in gone {
            answer(&format!("- down {} {}", m.id.name(), m.id.incarnation()));
        }
    }
}

/// One registry operation, as a command line asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Register {
        name: String,
        slot: usize,
    },
    RegisterOrGet {
        name: String,
        slot: usize,
    },
    Unregister {
        name: String,
    },
    Lookup {
        name: String,
    },
    /// The registry's state as this node sees it (the harness finds the leader with it).
    Status,
    /// Spawn a supervised Keeper under `name`.
    Spawn {
        name: String,
    },
    /// Ask the Keeper under `name` which activation it is.
    Ping {
        name: String,
    },
    /// Move the Keeper under `name` to node `to`.
    Migrate {
        name: String,
        to: String,
    },
    /// Apply update `op` to virtual account `account`.
    VAdd {
        account: String,
        op: u64,
    },
    /// The updates virtual account `account` has saved.
    VGet {
        account: String,
    },
}

impl Op {
    /// A lookup (or a status) changes nothing, so every failure of one is definite.
    fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Lookup { .. } | Op::Status | Op::Ping { .. } | Op::VGet { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    id: String,
    op: Op,
}

/// Why a line is not a command; `id` is its op-id when that much could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Malformed {
    id: Option<String>,
    reason: String,
}

impl Malformed {
    fn line(&self) -> String {
        format!(
            "{} error {}",
            self.id.as_deref().unwrap_or("-"),
            self.reason
        )
    }
}

/// The op-id of `raw`: its first word, if that is complete (not cut off by truncation) and
/// printable UTF-8, so that even a bad line is answered under its id where possible.
fn op_id(raw: &RawLine) -> Option<String> {
    let start = raw.bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &raw.bytes[start..];
    let len = rest.iter().position(u8::is_ascii_whitespace);
    if len.is_none() && raw.truncated {
        return None;
    }
    let word = std::str::from_utf8(&rest[..len.unwrap_or(rest.len())]).ok()?;
    (!word.chars().any(char::is_control)).then(|| word.to_owned())
}

/// Parses one command line against a node with `slots` slot actors.
fn parse_line(raw: &RawLine, slots: usize) -> Result<Command, Malformed> {
    let id = op_id(raw);
    let bad = |reason: String| Malformed {
        id: id.clone(),
        reason,
    };
    if raw.truncated {
        return Err(bad(format!("line longer than {MAX_LINE} bytes")));
    }
    let Ok(text) = std::str::from_utf8(&raw.bytes) else {
        return Err(bad("line is not UTF-8".into()));
    };
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    if words.is_empty() {
        return Err(bad("empty line".into()));
    }
    if id.is_none() {
        return Err(bad("op-id is not printable".into()));
    }
    let slot = |word: &str| -> Result<usize, Malformed> {
        match word.parse::<usize>() {
            Ok(slot) if slot < slots => Ok(slot),
            _ => Err(bad(format!(
                "slot {:?}: expected a number from 0 to {}",
                echo(word),
                slots - 1
            ))),
        }
    };
    let op = match words[1..] {
        ["register", name, s] => Op::Register {
            name: name.to_owned(),
            slot: slot(s)?,
        },
        ["register-or-get", name, s] => Op::RegisterOrGet {
            name: name.to_owned(),
            slot: slot(s)?,
        },
        ["unregister", name] => Op::Unregister {
            name: name.to_owned(),
        },
        ["lookup", name] => Op::Lookup {
            name: name.to_owned(),
        },
        ["status"] => Op::Status,
        ["spawn", name] => Op::Spawn {
            name: name.to_owned(),
        },
        ["ping", name] => Op::Ping {
            name: name.to_owned(),
        },
        ["migrate", name, to] => Op::Migrate {
            name: name.to_owned(),
            to: (*to).to_owned(),
        },
        ["vadd", account, op] => Op::VAdd {
            account: account.to_owned(),
            op: op
                .parse()
                .map_err(|_| bad(format!("update {:?}: expected a number", echo(op))))?,
        },
        ["vget", account] => Op::VGet {
            account: account.to_owned(),
        },
        [] => return Err(bad("missing command".into())),
        [verb, ..] => {
            return Err(bad(match verb {
                "register" | "register-or-get" => format!("usage: <op-id> {verb} <name> <slot>"),
                "unregister" | "lookup" | "spawn" | "ping" => {
                    format!("usage: <op-id> {verb} <name>")
                }
                "status" => "usage: <op-id> status".to_owned(),
                "migrate" => "usage: <op-id> migrate <name> <node>".to_owned(),
                "vadd" => "usage: <op-id> vadd <account> <n>".to_owned(),
                "vget" => "usage: <op-id> vget <account>".to_owned(),
                other => format!(
                    "unknown command {:?} (known: register, register-or-get, unregister, lookup, \
                     status, spawn, ping, migrate, vadd, vget)",
                    echo(other)
                ),
            }));
        }
    };
    Ok(Command {
        id: words[0].to_owned(),
        op,
    })
}

/// At most [`ECHO_LEN`] characters of `s`, for an error reason.
fn echo(s: &str) -> String {
    s.chars().take(ECHO_LEN).collect()
}

/// What one command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Bound(NodeId, u64),
    Released(NodeId, u64),
    Nothing,
    /// `status`: the leader this node vouches for, and the voters.
    Status(Option<String>, Vec<String>),
    /// `spawn`: where the Keeper went.
    Spawned(NodeId, u64),
    /// `migrate`: where the Keeper is now.
    Migrated(NodeId, u64),
    /// `ping`: the activation that answered (node, incarnation, seq).
    Pong(String),
    /// `vadd`: updates the account holds now.
    Applied(usize),
    /// `vget`: the account's saved updates.
    Ops(Vec<u64>),
    /// Definitely not applied.
    Fail(&'static str, String),
    /// Maybe applied.
    Info(&'static str, String),
}

impl Answer {
    fn line(&self, id: &str) -> String {
        match self {
            Answer::Bound(node, actor) => {
                format!(
                    "{id} ok bound {} {} {actor}",
                    node.name(),
                    node.incarnation()
                )
            }
            Answer::Released(node, actor) => {
                format!(
                    "{id} ok released {} {} {actor}",
                    node.name(),
                    node.incarnation()
                )
            }
            Answer::Nothing => format!("{id} ok none"),
            Answer::Status(leader, voters) => format!(
                "{id} ok status {} {}",
                leader.as_deref().unwrap_or("-"),
                if voters.is_empty() {
                    "-".to_owned()
                } else {
                    voters.join(",")
                }
            ),
            Answer::Spawned(node, actor) => format!(
                "{id} ok spawned {} {} {actor}",
                node.name(),
                node.incarnation()
            ),
            Answer::Migrated(node, actor) => format!(
                "{id} ok migrated {} {} {actor}",
                node.name(),
                node.incarnation()
            ),
            Answer::Pong(activation) => format!("{id} ok pong {activation}"),
            Answer::Applied(count) => format!("{id} ok applied {count}"),
            Answer::Ops(ops) if ops.is_empty() => format!("{id} ok ops -"),
            Answer::Ops(ops) => format!(
                "{id} ok ops {}",
                ops.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            ),
            Answer::Fail(kind, msg) => format!("{id} fail {kind} {}", one_line(msg)),
            Answer::Info(kind, msg) => format!("{id} info {kind} {}", one_line(msg)),
        }
    }
}

/// `msg` with control characters (a newline in an error from a peer, say) made spaces, so
/// that an answer is always one line.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How a failed write is reported, by what each [`RegistryError`] variant promises.
fn write_failure(e: &RegistryError) -> Answer {
    let kind = registry_error_kind(e);
    match e {
        // The registry refused the command: it is in the log as a no-op, or never got there.
        RegistryError::NameTaken { node, .. } => Answer::Fail(kind, format!("{} {e}", node.name())),
        RegistryError::NotFound(_)
        | RegistryError::InvalidName { .. }
        | RegistryError::TypeMismatch { .. }
        // Documented "A write was not applied", and taken at its word so that the checker
        // tests the promise (`Registry::through_leader` returns it only before any attempt
        // could have reached a log).
        | RegistryError::NoQuorum
        // Documented "Nothing was proposed".
        | RegistryError::NotFormed { .. } => Answer::Fail(kind, e.to_string()),
        // Timeout, Unavailable (no leader answered, perhaps after it took the write), Remote,
        // Create (its release of the claim is not confirmed), SystemStopped, and whatever a
        // newer library adds: the write may have been proposed and may still commit.
        _ => Answer::Info(kind, e.to_string()),
    }
}

/// How a failed lookup is reported: a read changes nothing, so always definite.
fn read_failure(e: &RegistryError) -> Answer {
    Answer::Fail(registry_error_kind(e), e.to_string())
}

/// Runs `op` on `system` with `slots` as the slot actors.
async fn execute(system: &ClusterSystem, slots: &[RemoteAddr<Counter>], op: Op) -> Answer {
    match op {
        Op::Register { name, slot } => match system.register_name(&name, &slots[slot]).await {
            Ok(entry) => Answer::Bound(entry.node, entry.actor_id),
            Err(e) => write_failure(&e),
        },
        Op::RegisterOrGet { name, slot } => {
            let addr = slots[slot].clone();
            match system
                .register_name_or_get(&name, || async move { Ok(addr) })
                .await
            {
                Ok(found) => bound(&found),
                Err(e) => write_failure(&e),
            }
        }
        Op::Unregister { name } => match system.unregister_name(&name).await {
            Ok(Some(entry)) => Answer::Released(entry.node, entry.actor_id),
            Ok(None) => Answer::Nothing,
            Err(e) => write_failure(&e),
        },
        Op::Lookup { name } => match system.lookup_linearizable::<Counter>(&name).await {
            Ok(found) => bound(&found),
            Err(e) => read_failure(&e),
        },
        Op::Status => match system.registry_status().await {
            Ok(s) => Answer::Status(s.leader, s.voters),
            Err(e) => read_failure(&e),
        },
        Op::Spawn { name } => {
            let spec = SpawnSpec::new()
                .placement(Placement::RoundRobin)
                .name(name.clone())
                .restart(RestartPolicy::Always);
            let keeper = Keeper {
                name,
                activation: String::new(),
                pings: 0,
            };
            match system.spawn(spec, |_| keeper).await {
                Ok(addr) => {
                    let (node, actor) = addr.resolved_target();
                    Answer::Spawned(node, actor)
                }
                Err(SpawnError::Registry(e)) => write_failure(&e),
                Err(e) => Answer::Info("Spawn", e.to_string()),
            }
        }
        Op::Ping { name } => match system.lookup::<Keeper>(&name).await {
            Ok(addr) => match addr.send(Which).timeout(PING_TIMEOUT).await {
                Ok(activation) => Answer::Pong(activation),
                Err(e) => Answer::Fail("Remote", e.to_string()),
            },
            Err(e) => read_failure(&e),
        },
        Op::Migrate { name, to } => match system.migrate(&name, &to).await {
            Ok(e) => Answer::Migrated(e.node, e.actor_id),
            // Nothing moved.
            Err(
                e @ (MigrateError::NotMigratable { .. }
                | MigrateError::Target { .. }
                | MigrateError::Conflict { .. }),
            ) => Answer::Fail("Migrate", e.to_string()),
            Err(e) => Answer::Info("Migrate", e.to_string()),
        },
        Op::VAdd { account, op } => match system.get::<Account>(account).send(Apply(op)).await {
            Ok(Ok(count)) => Answer::Applied(count),
            // The actor took it and its save failed: it may be in a later save.
            Ok(Err(e)) => Answer::Info("Save", e),
            Err(e) if e.is_not_delivered() => Answer::Fail("Virtual", e.to_string()),
            Err(e) => Answer::Info("Virtual", e.to_string()),
        },
        Op::VGet { account } => match system.get::<Account>(account).send(ReadOps).await {
            Ok(ops) => Answer::Ops(ops),
            Err(e) => Answer::Fail("Virtual", e.to_string()),
        },
    }
}

/// The saved state of an [`Account`]: the updates applied, in order.
#[derive(Default, Serialize, Deserialize)]
struct Applied {
    ops: Vec<u64>,
}

impl actix_cluster::state::PersistentState for Applied {}

/// A virtual actor of the virtual actor workload: applies numbered updates, saving after
/// each before it answers, and reports its activations to the ledger as `v:<account>`.
struct Account {
    id: String,
    activation: String,
    applied: Applied,
    checkpoint: actix_cluster::virtual_actor::Checkpoint<Applied>,
}

impl Actor for Account {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let seq = ACTIVATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.activation = format!("{} {seq}", ME.get().map_or("? 0", String::as_str));
        answer(&format!("- act start v:{} {}", self.id, self.activation));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        answer(&format!("- act stop v:{} {}", self.id, self.activation));
    }
}

#[derive(Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<usize, String>")]
struct Apply(u64);

impl Handler<Apply> for Account {
    type Result = ResponseFuture<Result<usize, String>>;
    fn handle(&mut self, m: Apply, _: &mut Context<Self>) -> Self::Result {
        self.applied.ops.push(m.0);
        let count = self.applied.ops.len();
        let saved = self.checkpoint.save(&self.applied);
        Box::pin(async move {
            saved.await.map_err(|e| e.to_string())?;
            Ok(count)
        })
    }
}

#[derive(Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Vec<u64>")]
struct ReadOps;

impl Handler<ReadOps> for Account {
    type Result = MessageResult<ReadOps>;
    fn handle(&mut self, _: ReadOps, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.applied.ops.clone())
    }
}

impl DistributedActor for Account {
    const NAME: &'static str = "fault-node.account";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Apply>("apply").handle::<ReadOps>("read");
    }
}

impl actix_cluster::virtual_actor::VirtualActor for Account {
    type State = Applied;
    fn activate(
        id: &str,
        applied: Applied,
        checkpoint: actix_cluster::virtual_actor::Checkpoint<Applied>,
    ) -> Self {
        Account {
            id: id.to_owned(),
            activation: String::new(),
            applied,
            checkpoint,
        }
    }
    /// Short, so that runs passivate and reactivate accounts between faults too.
    fn idle_timeout() -> Duration {
        Duration::from_secs(2)
    }
}

/// How long a `ping` waits for its Keeper.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// This process's node, as `<node> <incarnation>`, for the ledger lines.
static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Activations started in this process.
static ACTIVATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A supervised actor of the self-healing workload: it reports its start and stop to the
/// harness's ledger, answers which activation it is, and counts the pings it handled.
#[derive(Serialize, Deserialize)]
struct Keeper {
    name: String,
    /// This activation, set when it starts. Serialized (for a migration) it tells the next
    /// activation which one its state came from; empty in the spawn state.
    activation: String,
    /// Pings handled by this activation and those whose state it carries.
    pings: u64,
}

impl Actor for Keeper {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let seq = ACTIVATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let from = std::mem::take(&mut self.activation);
        self.activation = format!("{} {seq}", ME.get().map_or("? 0", String::as_str));
        if from.is_empty() {
            answer(&format!("- act start {} {}", self.name, self.activation));
        } else {
            answer(&format!(
                "- act start {} {} from {from}",
                self.name, self.activation
            ));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        answer(&format!("- act stop {} {}", self.name, self.activation));
    }
}

/// Which activation is this?
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "String")]
struct Which;

impl Handler<Which> for Keeper {
    type Result = String;
    fn handle(&mut self, _: Which, _: &mut Context<Self>) -> String {
        self.pings += 1;
        format!("{} {}", self.activation, self.pings)
    }
}

impl DistributedActor for Keeper {
    const NAME: &'static str = "fault-node.keeper";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Which>("which").migratable();
    }
}

/// The binding a registry call returned. `resolved_target` rather than `node()` and
/// `actor_id()`: an address obtained by name follows the name, and a registration applied
/// between the call's return and this line would otherwise be reported (or, worse, half of it).
fn bound(addr: &RemoteAddr<Counter>) -> Answer {
    let (node, actor) = addr.resolved_target();
    Answer::Bound(node, actor)
}

/// The node's side of the protocol: the slot actors and the commands in flight.
struct Node {
    system: ClusterSystem,
    slots: Vec<RemoteAddr<Counter>>,
    /// Op-id → whether it is a read, for every command started and not yet answered.
    in_flight: std::cell::RefCell<HashMap<String, bool>>,
    /// Woken when `in_flight` becomes empty.
    idle: Notify,
}

impl Node {
    /// Parses `line` and starts its command, or answers it with an error.
    fn handle(self: &Rc<Self>, line: RawLine) {
        let cmd = match parse_line(&line, self.slots.len()) {
            Ok(cmd) => cmd,
            Err(bad) => return answer(&bad.line()),
        };
        {
            let mut in_flight = self.in_flight.borrow_mut();
            if in_flight.contains_key(&cmd.id) {
                drop(in_flight);
                return answer(&format!("{} error op-id already in flight", cmd.id));
            }
            in_flight.insert(cmd.id.clone(), cmd.op.is_read());
        }
        let node = Rc::clone(self);
        // On this arbiter: commands interleave at their awaits, and none holds up the reader.
        actix_rt::spawn(async move {
            let result = execute(&node.system, &node.slots, cmd.op).await;
            node.finish(&cmd.id, &result);
        });
    }

    /// Answers a command that arrives while the node is stopping: never attempted.
    fn refuse(&self, line: RawLine) {
        match parse_line(&line, self.slots.len()) {
            Ok(cmd) => answer(
                &Answer::Fail("Shutdown", "the node is stopping; not attempted".into())
                    .line(&cmd.id),
            ),
            Err(bad) => answer(&bad.line()),
        }
    }

    /// Answers `id` with `result`, unless it was already answered as abandoned.
    fn finish(&self, id: &str, result: &Answer) {
        let mut in_flight = self.in_flight.borrow_mut();
        if in_flight.remove(id).is_none() {
            return;
        }
        let empty = in_flight.is_empty();
        drop(in_flight);
        answer(&result.line(id));
        if empty {
            // A stored permit: the drain loop may not be waiting yet.
            self.idle.notify_one();
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.borrow().is_empty()
    }

    /// Answers every command still in flight as cut short by the shutdown; their tasks'
    /// later results are dropped.
    fn abandon_all(&self) {
        let mut abandoned: Vec<(String, bool)> = self.in_flight.borrow_mut().drain().collect();
        abandoned.sort();
        for (id, read) in abandoned {
            let msg = "the node stopped before the operation finished".to_owned();
            let result = if read {
                Answer::Fail("Shutdown", msg)
            } else {
                Answer::Info("Shutdown", msg)
            };
            answer(&result.line(&id));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actix_cluster::RemoteError;

    fn raw(s: &str) -> RawLine {
        RawLine {
            bytes: s.as_bytes().to_vec(),
            truncated: false,
        }
    }

    fn parse(s: &str) -> Result<Command, Malformed> {
        parse_line(&raw(s), 4)
    }

    fn error_line(s: &str) -> String {
        parse(s).unwrap_err().line()
    }

    #[test]
    fn commands_are_parsed_with_their_op_id() {
        assert_eq!(
            parse("7 register a 0"),
            Ok(Command {
                id: "7".into(),
                op: Op::Register {
                    name: "a".into(),
                    slot: 0
                }
            })
        );
        assert_eq!(
            parse("  x-1\tregister-or-get svc/b 3 ").unwrap().op,
            Op::RegisterOrGet {
                name: "svc/b".into(),
                slot: 3
            }
        );
        assert_eq!(
            parse("2 unregister a").unwrap().op,
            Op::Unregister { name: "a".into() }
        );
        assert_eq!(
            parse("3 lookup a\r").unwrap().op,
            Op::Lookup { name: "a".into() }
        );
        assert_eq!(
            parse("4 vadd a1 77").unwrap().op,
            Op::VAdd {
                account: "a1".into(),
                op: 77
            }
        );
        assert_eq!(
            parse("5 vget a1").unwrap().op,
            Op::VGet {
                account: "a1".into()
            }
        );
        assert!(
            parse("6 vadd a1 x")
                .unwrap_err()
                .reason
                .contains("expected a number")
        );
        assert!(parse("7 vget").unwrap_err().reason.contains("usage"));
    }

    #[test]
    fn malformed_lines_are_answered_under_their_op_id_when_it_can_be_read() {
        assert_eq!(error_line(""), "- error empty line");
        assert_eq!(error_line("   "), "- error empty line");
        assert_eq!(error_line("5"), "5 error missing command");
        assert!(error_line("5 fly a").starts_with("5 error unknown command \"fly\""));
        assert!(error_line("5 register a").starts_with("5 error usage: <op-id> register"));
        assert!(error_line("5 lookup a b").starts_with("5 error usage: <op-id> lookup"));
        assert!(error_line("5 register a 4").starts_with("5 error slot \"4\""));
        assert!(error_line("5 register a -1").starts_with("5 error slot \"-1\""));
        assert!(error_line("5 register-or-get a x").starts_with("5 error slot \"x\""));
        assert_eq!(
            error_line("\u{7} lookup a"),
            "- error op-id is not printable"
        );

        let not_utf8 = RawLine {
            bytes: b"9 lookup \xff".to_vec(),
            truncated: false,
        };
        assert_eq!(
            parse_line(&not_utf8, 4).unwrap_err().line(),
            "9 error line is not UTF-8"
        );
        let long = RawLine {
            bytes: b"10 register aaaa".to_vec(),
            truncated: true,
        };
        assert_eq!(
            parse_line(&long, 4).unwrap_err().line(),
            format!("10 error line longer than {MAX_LINE} bytes")
        );
        // Cut inside the op-id: it cannot be trusted.
        let long_id = RawLine {
            bytes: b"1234".to_vec(),
            truncated: true,
        };
        assert!(
            parse_line(&long_id, 4)
                .unwrap_err()
                .line()
                .starts_with("- error")
        );
    }

    #[test]
    fn lines_are_read_bounded_and_a_last_line_without_newline_counts() {
        let mut input = &b"1 lookup a\nxxxxxxxxxx\n\n2 lookup b"[..];
        let mut read = || read_line(&mut input, 8).unwrap();
        assert_eq!(
            read(),
            Some(RawLine {
                bytes: b"1 lookup".to_vec(),
                truncated: true
            })
        );
        assert_eq!(
            read(),
            Some(RawLine {
                bytes: b"xxxxxxxx".to_vec(),
                truncated: true
            })
        );
        assert_eq!(read(), Some(raw("")));
        assert_eq!(
            read(),
            Some(RawLine {
                bytes: b"2 lookup".to_vec(),
                truncated: true
            })
        );
        assert_eq!(read(), None);

        let mut input = &b"1 lookup a\n2 lookup b"[..];
        assert_eq!(read_line(&mut input, 64).unwrap(), Some(raw("1 lookup a")));
        assert_eq!(read_line(&mut input, 64).unwrap(), Some(raw("2 lookup b")));
        assert_eq!(read_line(&mut input, 64).unwrap(), None);
    }

    #[test]
    fn answers_are_one_line_each() {
        let n = NodeId::new("n2", 17);
        assert_eq!(Answer::Bound(n.clone(), 5).line("1"), "1 ok bound n2 17 5");
        assert_eq!(Answer::Released(n, 5).line("2"), "2 ok released n2 17 5");
        assert_eq!(Answer::Nothing.line("3"), "3 ok none");
        assert_eq!(
            Answer::Info("Unavailable", "a\nb\r\n".into()).line("4"),
            "4 info Unavailable a b  "
        );
    }

    #[test]
    fn write_failures_are_definite_only_where_the_registry_promises_it() {
        let holder = NodeId::new("n3", 2);
        let taken = RegistryError::NameTaken {
            name: "a".into(),
            node: holder,
        };
        let Answer::Fail("NameTaken", msg) = write_failure(&taken) else {
            panic!("NameTaken is definite");
        };
        assert!(msg.starts_with("n3 "), "{msg}");

        for e in [
            RegistryError::NotFound("a".into()),
            RegistryError::InvalidName {
                name: String::new(),
                reason: "empty",
            },
            RegistryError::TypeMismatch {
                name: "a".into(),
                expected: "x".into(),
                found: "y".into(),
            },
            RegistryError::NoQuorum,
            RegistryError::NotFormed { have: 1, expect: 3 },
        ] {
            assert!(
                matches!(write_failure(&e), Answer::Fail(k, _) if k == registry_error_kind(&e)),
                "{e:?}"
            );
        }
        for e in [
            RegistryError::Timeout(Duration::from_secs(5)),
            RegistryError::Unavailable("no registry leader".into()),
            RegistryError::Remote(RemoteError::Timeout(Duration::from_secs(5))),
            RegistryError::Create(RemoteError::ActorStopped),
            RegistryError::SystemStopped,
        ] {
            assert!(
                matches!(write_failure(&e), Answer::Info(k, _) if k == registry_error_kind(&e)),
                "{e:?}"
            );
        }
    }

    #[test]
    fn every_lookup_failure_is_definite_and_keeps_its_kind() {
        for e in [
            RegistryError::NotFound("a".into()),
            RegistryError::NoQuorum,
            RegistryError::Timeout(Duration::from_secs(5)),
            RegistryError::Unavailable("x".into()),
            RegistryError::SystemStopped,
        ] {
            assert!(
                matches!(read_failure(&e), Answer::Fail(k, _) if k == registry_error_kind(&e)),
                "{e:?}"
            );
        }
    }

    #[test]
    fn options_default_to_four_slots_and_check_the_registry_flags() {
        let base = ["--name", "n1", "--listen", "127.0.0.1:0", "--cluster", "c"];
        let parse = |extra: &[&str]| Options::parse(base.iter().chain(extra).copied());
        let o = parse(&[]).unwrap();
        assert_eq!(o.slots, 4);
        assert_eq!(o.registry.voters, 3);
        let o = parse(&["--voters", "5", "--bootstrap-expect", "3", "--slots", "2"]).unwrap();
        assert_eq!(
            (o.registry.voters, o.registry.bootstrap_expect),
            (5, Some(3))
        );
        assert_eq!(o.slots, 2);
        for bad in [
            &["--voters", "4"][..],
            &["--voters", "3", "--bootstrap-expect", "5"],
            &["--slots", "0"],
            &["--role", "master"],
            &["--architecture", "centralized"],
        ] {
            assert!(matches!(parse(bad), Err(UsageError::Invalid(_))), "{bad:?}");
        }
        assert!(Options::parse(["--name", "n1", "--listen", "127.0.0.1:0"]).is_err());
    }
}
