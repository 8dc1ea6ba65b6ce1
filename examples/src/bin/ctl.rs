//! `ctl`: operator commands against a running cluster, run as a short-lived client node.
//!
//! ```text
//! ctl status --seed 127.0.0.1:7001 --insecure-plaintext [--json]
//! ctl register svc/main --node node-2 --seed 127.0.0.1:7001 --insecure-plaintext
//! ctl names --seed 127.0.0.1:7001 --insecure-plaintext [--json] [--prefix svc/]
//! ctl registry --seed 127.0.0.1:7001 --insecure-plaintext [--json]
//! ctl registry remove-voter node-3 --seed 127.0.0.1:7001 --insecure-plaintext
//! ctl registry recover --from node-1 --seed 127.0.0.1:7001 --insecure-plaintext
//! ```

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::{LoadReport, NameEntry, RecoveryReport, RegistryError, RegistryStatus};
use actix_cluster_examples::args::{Args, UsageError};
use actix_cluster_examples::{
    COUNTER_NAME, Counter, Security, client_node_name, error_kind, init_tracing,
    registry_error_kind, wait_for_node,
};
use serde::Serialize;

const USAGE: &str = "\
usage: ctl COMMAND [FLAGS]

Operator commands against a running cluster. ctl joins the cluster as a short-lived client
node through one node's address, asks that node, prints the answer and leaves.

commands:
  status    the member table as one node sees it
  register  register a node's `counter` actor under a cluster-wide name
  names     the cluster-wide names, with their node and version
  registry  the registry's leader, voters, learners and log position;
            `registry remove-voter NODE` and `registry recover --from NODE` repair it

Run `ctl COMMAND --help` for the flags of a command.";

const STATUS_USAGE: &str = "\
usage: ctl status --seed IP:PORT (--tls-dir DIR | --insecure-plaintext)
                  [--json] [--cluster NAME] [--name NAME] [--wait SECS]

Prints the member table of the node listening at --seed, as that node sees it (ctl's own
row left out): name, incarnation, address, role, state, phi and load of every member.

  --seed IP:PORT          address of the node to ask
  --json                  print {\"members\": [{\"name\", \"incarnation\", \"addr\", \"role\",
                          \"state\", \"phi\", \"load\"}]}, state one of joining, up, suspect,
                          down, leaving, left, load {\"actors\", \"mailbox_backlog\", \"cpu\"}
                          or null
  --cluster NAME          cluster name (default: demo)
  --tls-dir DIR           mutual TLS; DIR must hold a certificate for ctl's node name
                          (`gen-certs DIR --nodes ...,ctl` makes one)
  --insecure-plaintext    no TLS (the nodes must run without TLS too)
  --name NAME             ctl's node name (default: the name in the TLS certificate, or
                          ctl-<pid> without TLS)
  --wait SECS             how long to wait for a connection to --seed (default: 10)

Exit codes: 0 on success, 2 for a bad command line, 1 when the node cannot be reached or
does not answer.";

/// The flags every command shares, for the usage texts below.
macro_rules! connect_flags {
    () => {
        "  --seed IP:PORT          address of a node to join the cluster through
  --cluster NAME          cluster name (default: demo)
  --tls-dir DIR           mutual TLS; DIR must hold a certificate for ctl's node name
                          (`gen-certs DIR --nodes ...,ctl` makes one)
  --insecure-plaintext    no TLS (the nodes must run without TLS too)
  --name NAME             ctl's node name (default: the name in the TLS certificate, or
                          ctl-<pid> without TLS)
  --wait SECS             how long to wait for a connection to --seed, and for a registry
                          that is still forming (default: 10)"
    };
}

const REGISTER_USAGE: &str = concat!(
    "\
usage: ctl register NAME --node NODE --seed IP:PORT (--tls-dir DIR | --insecure-plaintext)
                    [--cluster NAME] [--name NAME] [--wait SECS]

Registers the actor that node NODE hosts under its local name `counter` (every `node`
program has one) under the cluster-wide name NAME, and prints
`registered NAME -> NODE/<actor id> version V` once a majority of the registry's voters has
committed it. Registering the same actor under the same name again succeeds with the
existing registration. The name is released when the actor stops or NODE goes down.

  NAME                    the cluster-wide name (1 to 512 bytes, no control characters)
  --node NODE             the node whose `counter` to register
",
    connect_flags!(),
    "

Exit codes: 0 on success, 2 for a bad command line, 1 when the registration fails: the name
is taken by another actor (NameTaken), the cluster has no quorum (NoQuorum), no answer in
time (Timeout: the registration may still commit), NODE or --seed cannot be reached."
);

const NAMES_USAGE: &str = concat!(
    "\
usage: ctl names --seed IP:PORT (--tls-dir DIR | --insecure-plaintext)
                 [--json] [--prefix P] [--cluster NAME] [--name NAME] [--wait SECS]

Prints every cluster-wide name (in name order) with the node hosting its actor and the
version of its registration, from a registry replica (ctl holds none: a member answers).

  --prefix P              only names starting with P
  --json                  print {\"names\": [{\"name\", \"node\", \"incarnation\",
                          \"actor_type\", \"actor_id\", \"version\"}]}
",
    connect_flags!(),
    "

Exit codes: 0 on success (also when no name is registered), 2 for a bad command line, 1
when the cluster cannot be reached or the registry does not answer."
);

const REGISTRY_USAGE: &str = concat!(
    "\
usage: ctl registry [remove-voter NODE | recover --from NODE]
                    --seed IP:PORT (--tls-dir DIR | --insecure-plaintext)
                    [--json] [--cluster NAME] [--name NAME] [--wait SECS]

Without a subcommand, prints the state of the cluster-wide name registry as a member sees
it: the current leader (if known), the voters, the learners (replicas without a vote), the
highest term it has seen, the term and index of the last entry in its log, the last log
index applied to its replica, and how many names it holds.

remove-voter NODE
    Removes NODE from the registry's voters for good: for a voter whose machine is gone.
    A live spare takes its place when there is one. Refused when NODE is alive, is not a
    voter, or when the voters left would hold fewer than a quorum of live ones.
recover --from NODE
    After a majority of the voters is lost for good, re-forms the registry from NODE's
    replica: NODE becomes the only voter and the others are added back as they are Up.
    Names only the lost voters held are lost. Refused while a quorum of the old voters
    answers, and when another member holds a longer log (its `last log` is higher: run
    `ctl registry --seed` against each survivor, then recover from the highest).

  --json                  print {\"raft_id\", \"leader\", \"voters\", \"learners\", \"term\",
                          \"last_log\", \"applied\", \"names\"}, leader a node name or
                          null, last_log [term, index] or null (status and remove-voter);
                          recover prints {\"node\", \"old_voters\", \"answered\",
                          \"entry\", \"names\"}
",
    connect_flags!(),
    "

Exit codes: 0 on success, 2 for a bad command line, 1 when the cluster cannot be reached,
the registry does not answer, or the action is refused (the reason is printed)."
);

fn main() -> ExitCode {
    init_tracing();
    let mut argv = std::env::args().skip(1);
    // Each command parses its own flags, so that later commands can take others.
    match argv.next().as_deref() {
        Some("status") => connect_json_main(argv, STATUS_USAGE, status),
        Some("register") => register_main(argv),
        Some("names") => names_main(argv),
        Some("registry") => registry_main(argv),
        Some("-h" | "--help") => UsageError::Help.report(USAGE),
        Some(other) => UsageError::invalid(format!("unknown command {other:?}")).report(USAGE),
        None => UsageError::invalid("a command is required").report(USAGE),
    }
}

/// How ctl reaches the cluster; shared by every command.
#[derive(Debug)]
struct Connect {
    seed: SocketAddr,
    cluster: String,
    security: Security,
    name: Option<String>,
    wait: Duration,
}

/// The flags every command takes, for [`Args::parse`].
const CONNECT_VALUES: [&str; 5] = ["--seed", "--cluster", "--tls-dir", "--name", "--wait"];

/// [`CONNECT_VALUES`] followed by a command's own value flags.
fn value_flags(extra: &[&'static str]) -> Vec<&'static str> {
    CONNECT_VALUES.iter().chain(extra).copied().collect()
}

/// Runs a command's future on an actix system; its error goes to stderr with exit code 1.
fn run(command: impl Future<Output = Result<(), Box<dyn Error>>>) -> ExitCode {
    match actix_rt::System::new().block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Connect {
    fn from_args(args: &Args) -> Result<Self, UsageError> {
        Ok(Connect {
            seed: args
                .parsed("--seed")?
                .ok_or_else(|| UsageError::invalid("--seed IP:PORT is required"))?,
            cluster: args.cluster()?,
            security: Security::from_args(args)?,
            name: args.value("--name").map(str::to_owned),
            wait: Duration::from_secs(args.parsed("--wait")?.unwrap_or(10)),
        })
    }

    /// Starts ctl's client node and waits for a connection to the seed; returns the node and
    /// the identity of the node behind the seed address.
    async fn join(&self) -> Result<(ClusterSystem, NodeId), Box<dyn Error>> {
        let name = client_node_name(self.name.as_deref(), &self.security, "ctl")?;
        let builder = ClusterConfig::new()
            .node_name(&name)
            .node_role(NodeRole::Client)
            .listen("127.0.0.1:0")
            .seed_nodes([self.seed.to_string()]);
        let config = self.security.apply(builder)?.build()?;
        let system = ClusterSystem::new(&self.cluster, config).start().await?;
        match system.wait_for_addr(self.seed, self.wait).await {
            Some(id) => Ok((system, id)),
            None => {
                let failed = system.stats().handshakes_failed;
                system.shutdown().await;
                Err(format!(
                    "no connection to a node at {} within {:?} ({failed} failed connection \
                     attempts): is it running, in cluster {:?}, with the same transport \
                     security (TLS with the same CA, or plaintext on both sides)? \
                     RUST_LOG=actix_cluster=debug shows each attempt",
                    self.seed, self.wait, self.cluster
                )
                .into())
            }
        }
    }
}

/// The arguments of a command that takes only the connection flags and `--json`.
fn connect_and_json(argv: impl Iterator<Item = String>) -> Result<(Connect, bool), UsageError> {
    let args = Args::parse(argv, &CONNECT_VALUES, &["--insecure-plaintext", "--json"])?;
    if let Some(extra) = args.positionals().first() {
        return Err(UsageError::invalid(format!(
            "unexpected argument {extra:?}"
        )));
    }
    Ok((Connect::from_args(&args)?, args.switch("--json")))
}

/// A command that takes only the connection flags and `--json`: parses them (printing `usage`
/// on a mistake) and runs `command`.
fn connect_json_main<F, Fut>(
    argv: impl Iterator<Item = String>,
    usage: &str,
    command: F,
) -> ExitCode
where
    F: FnOnce(Connect, bool) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn Error>>>,
{
    match connect_and_json(argv) {
        Ok((connect, json)) => run(command(connect, json)),
        Err(e) => e.report(usage),
    }
}

async fn status(connect: Connect, json: bool) -> Result<(), Box<dyn Error>> {
    let (system, target) = connect.join().await?;
    let answer = system.members_of(target.name()).await;
    let me = system.node_id().clone();
    system.shutdown().await;
    let mut members =
        answer.map_err(|e| format!("{} did not answer: {}: {e}", target, error_kind(&e)))?;
    // ctl is a member of the table it asks for while it asks; it is not what the operator
    // wants to see.
    members.retain(|m| m.id != me);
    if json {
        let out = StatusJson {
            members: members.iter().map(MemberJson::from).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("members as seen by {target} ({}):", connect.seed);
        print!("{}", table(&members));
    }
    Ok(())
}

/// `ctl status --json`: exactly these fields, in this order.
#[derive(Serialize)]
struct StatusJson {
    members: Vec<MemberJson>,
}

#[derive(Serialize)]
struct MemberJson {
    name: String,
    incarnation: u64,
    addr: String,
    role: &'static str,
    state: &'static str,
    /// Non-finite values (a member silent for very long) come out as `null`.
    phi: f64,
    load: Option<LoadJson>,
}

#[derive(Serialize)]
struct LoadJson {
    actors: u64,
    mailbox_backlog: u64,
    cpu: Option<f32>,
}

impl From<&Member> for MemberJson {
    fn from(m: &Member) -> Self {
        MemberJson {
            name: m.id.name().to_owned(),
            incarnation: m.id.incarnation(),
            addr: m.addr.to_string(),
            role: m.role.as_str(),
            state: m.state.as_str(),
            phi: m.phi,
            load: m.load.as_ref().map(LoadJson::from),
        }
    }
}

impl From<&LoadReport> for LoadJson {
    fn from(l: &LoadReport) -> Self {
        LoadJson {
            actors: l.actors,
            mailbox_backlog: l.mailbox_backlog,
            cpu: l.cpu,
        }
    }
}

/// The human table: one row per member.
fn table(members: &[Member]) -> String {
    let header = [
        "NAME",
        "INCARNATION",
        "ADDR",
        "ROLE",
        "STATE",
        "PHI",
        "LOAD",
    ];
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.name().to_owned(),
                // Hex, as node ids appear in logs (`node-1#0001...`).
                format!("{:016x}", m.id.incarnation()),
                m.addr.to_string(),
                m.role.as_str().to_owned(),
                m.state.as_str().to_owned(),
                format!("{:.2}", m.phi),
                m.load.as_ref().map_or_else(|| "-".to_owned(), load_cell),
            ]
        })
        .collect();
    render_table(&header, &rows)
}

/// Lays out a header and rows, every column padded to its widest cell.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn load_cell(l: &LoadReport) -> String {
    let cpu = l.cpu.map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
    format!(
        "actors={} backlog={} cpu={cpu}",
        l.actors, l.mailbox_backlog
    )
}

/// How often a call is tried again while the registry is still forming: a fresh cluster
/// bootstraps it within about a second, and each try costs one request.
const FORMING_POLL: Duration = Duration::from_millis(200);

/// Runs a registry call, and again while it fails with [`RegistryError::Unavailable`] (the
/// registry has not formed yet, or no member could be asked), until `wait` has passed. Other
/// errors are final: retrying a write after `NoQuorum` or `Timeout` is the operator's call.
async fn while_forming<T, F, Fut>(wait: Duration, mut call: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let deadline = Instant::now() + wait;
    loop {
        match call().await {
            Err(e @ (RegistryError::Unavailable(_) | RegistryError::NotFormed { .. }))
                if Instant::now() + FORMING_POLL < deadline =>
            {
                tracing::debug!(why = %e, "registry not available yet; trying again");
                actix_rt::time::sleep(FORMING_POLL).await;
            }
            other => return other,
        }
    }
}

/// A failed registry call as ctl reports it: what it was doing, the error's variant (to look
/// up in the docs of `RegistryError`) and its message.
fn registry_failure(doing: &str, e: &RegistryError) -> Box<dyn Error> {
    format!("{doing}: {}: {e}", registry_error_kind(e)).into()
}

fn register_main(argv: impl Iterator<Item = String>) -> ExitCode {
    let parsed =
        Args::parse(argv, &value_flags(&["--node"]), &["--insecure-plaintext"]).and_then(|args| {
            let name = match args.positionals() {
                [name] => name.clone(),
                [] => return Err(UsageError::invalid("the NAME to register is required")),
                [_, extra, ..] => {
                    return Err(UsageError::invalid(format!(
                        "unexpected argument {extra:?}"
                    )));
                }
            };
            let node = args.required("--node")?.to_owned();
            Ok((Connect::from_args(&args)?, name, node))
        });
    let (connect, name, node) = match parsed {
        Ok(p) => p,
        Err(e) => return e.report(REGISTER_USAGE),
    };
    run(register(connect, name, node))
}

async fn register(connect: Connect, name: String, node: String) -> Result<(), Box<dyn Error>> {
    let (system, _) = connect.join().await?;
    let outcome = register_counter(&system, &connect, &name, &node).await;
    system.shutdown().await;
    let entry = outcome?;
    println!(
        "registered {} -> {}/{} version {}",
        entry.name,
        entry.node.name(),
        entry.actor_id,
        entry.version
    );
    Ok(())
}

/// Resolves `counter` on `node` and registers it as `name`.
async fn register_counter(
    system: &ClusterSystem,
    connect: &Connect,
    name: &str,
    node: &str,
) -> Result<NameEntry, Box<dyn Error>> {
    // ctl knows the seed; the target is learned from it, which takes a gossip round or two.
    if !wait_for_node(system, node, connect.wait).await {
        return Err(format!(
            "no connection to node {node:?} within {:?}: is it an up member of cluster {:?}? \
             (`ctl status` lists the members)",
            connect.wait, connect.cluster
        )
        .into());
    }
    let counter = system
        .actor_on::<Counter>(node, COUNTER_NAME)
        .await
        .map_err(|e| {
            format!(
                "resolving {COUNTER_NAME:?} on {node}: {}: {e}",
                error_kind(&e)
            )
        })?;
    while_forming(connect.wait, || system.register_name(name, &counter))
        .await
        .map_err(|e| registry_failure(&format!("registering {name:?}"), &e))
}

fn names_main(argv: impl Iterator<Item = String>) -> ExitCode {
    let parsed = Args::parse(
        argv,
        &value_flags(&["--prefix"]),
        &["--insecure-plaintext", "--json"],
    )
    .and_then(|args| {
        if let Some(extra) = args.positionals().first() {
            return Err(UsageError::invalid(format!(
                "unexpected argument {extra:?}"
            )));
        }
        let prefix = args.value("--prefix").unwrap_or_default().to_owned();
        Ok((Connect::from_args(&args)?, prefix, args.switch("--json")))
    });
    let (connect, prefix, json) = match parsed {
        Ok(p) => p,
        Err(e) => return e.report(NAMES_USAGE),
    };
    run(names(connect, prefix, json))
}

async fn names(connect: Connect, prefix: String, json: bool) -> Result<(), Box<dyn Error>> {
    let (system, _) = connect.join().await?;
    let answer = while_forming(connect.wait, || system.list_names(&prefix)).await;
    system.shutdown().await;
    let names = answer.map_err(|e| registry_failure("listing names", &e))?;
    if json {
        let out = NamesJson {
            names: names.iter().map(NameJson::from).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if names.is_empty() && prefix.is_empty() {
        println!("no names registered");
    } else if names.is_empty() {
        println!("no names registered under {prefix:?}");
    } else {
        print!("{}", names_table(&names));
    }
    Ok(())
}

/// `ctl names --json`: exactly these fields, in this order.
#[derive(Serialize)]
struct NamesJson {
    names: Vec<NameJson>,
}

#[derive(Serialize)]
struct NameJson {
    name: String,
    /// Node name; with `incarnation`, the node's identity.
    node: String,
    incarnation: u64,
    actor_type: String,
    actor_id: u64,
    version: u64,
}

impl From<&NameEntry> for NameJson {
    fn from(e: &NameEntry) -> Self {
        NameJson {
            name: e.name.clone(),
            node: e.node.name().to_owned(),
            incarnation: e.node.incarnation(),
            actor_type: e.actor_type.clone(),
            actor_id: e.actor_id,
            version: e.version,
        }
    }
}

fn names_table(names: &[NameEntry]) -> String {
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.node.name().to_owned(),
                e.version.to_string(),
            ]
        })
        .collect();
    render_table(&["NAME", "NODE", "VERSION"], &rows)
}

/// What `ctl registry` does.
#[derive(Debug)]
enum RegistryAction {
    Status,
    RemoveVoter(String),
    Recover(String),
}

fn registry_main(argv: impl Iterator<Item = String>) -> ExitCode {
    let parsed = Args::parse(
        argv,
        &value_flags(&["--from"]),
        &["--insecure-plaintext", "--json"],
    )
    .and_then(|args| {
        let positionals = args.positionals();
        let unexpected =
            |extra: &String| UsageError::invalid(format!("unexpected argument {extra:?}"));
        let action = match (
            positionals.first().map(String::as_str),
            args.value("--from"),
        ) {
            (None, None) => RegistryAction::Status,
            (Some("remove-voter"), None) => match &positionals[1..] {
                [node] => RegistryAction::RemoveVoter(node.clone()),
                [] => return Err(UsageError::invalid("remove-voter needs the NODE to remove")),
                [_, extra, ..] => return Err(unexpected(extra)),
            },
            (Some("recover"), Some(from)) => match &positionals[1..] {
                [] => RegistryAction::Recover(from.to_owned()),
                [extra, ..] => return Err(unexpected(extra)),
            },
            (Some("recover"), None) => {
                return Err(UsageError::invalid("recover needs --from NODE"));
            }
            (_, Some(_)) => {
                return Err(UsageError::invalid("--from belongs to `registry recover`"));
            }
            (Some(other), None) => {
                return Err(UsageError::invalid(format!(
                    "unknown registry subcommand {other:?}"
                )));
            }
        };
        Ok((Connect::from_args(&args)?, action, args.switch("--json")))
    });
    match parsed {
        Ok((connect, action, json)) => run(registry(connect, action, json)),
        Err(e) => e.report(REGISTRY_USAGE),
    }
}

async fn registry(
    connect: Connect,
    action: RegistryAction,
    json: bool,
) -> Result<(), Box<dyn Error>> {
    let (system, _) = connect.join().await?;
    let status = match &action {
        RegistryAction::Status => {
            let answer = while_forming(connect.wait, || system.registry_status()).await;
            system.shutdown().await;
            answer.map_err(|e| registry_failure("asking for the registry status", &e))?
        }
        RegistryAction::RemoveVoter(node) => {
            let answer = system.registry_remove_voter(node).await;
            system.shutdown().await;
            answer.map_err(|e| registry_failure(&format!("removing voter {node}"), &e))?
        }
        RegistryAction::Recover(from) => {
            let answer = system.registry_recover(from).await;
            system.shutdown().await;
            let report =
                answer.map_err(|e| registry_failure(&format!("recovering from {from}"), &e))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&RecoveryJson::from(&report))?
                );
            } else {
                println!(
                    "registry re-formed from {}: its only voter at term {} index {}; {} names \
                     kept",
                    report.node, report.entry.0, report.entry.1, report.names
                );
                println!("old voters  {}", list(&report.old_voters));
                println!("answered    {}", list(&report.answered));
                println!(
                    "the other members join again as they are Up; `ctl registry` shows the voters"
                );
            }
            return Ok(());
        }
    };
    let out = RegistryJson::from(&status);
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let raft_id = out
            .raft_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        let last_log = out.last_log.map_or_else(
            || "-".to_owned(),
            |(term, index)| format!("term {term}, index {index}"),
        );
        println!("raft id   {raft_id} (of the node asked)");
        println!("leader    {}", out.leader.as_deref().unwrap_or("-"));
        println!("voters    {}", list(&out.voters));
        println!("learners  {}", list(&out.learners));
        println!("term      {}", out.term);
        println!("last log  {last_log}");
        println!("applied   {}", out.applied);
        println!("names     {}", out.names);
    }
    Ok(())
}

/// Node names, comma-separated, or `-` for none.
fn list(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "-".to_owned()
    } else {
        nodes.join(", ")
    }
}

/// `ctl registry recover --json`.
#[derive(Serialize)]
struct RecoveryJson {
    node: String,
    old_voters: Vec<String>,
    answered: Vec<String>,
    /// `[term, index]` of the membership entry that made `node` the only voter.
    entry: (u64, u64),
    names: usize,
}

impl From<&RecoveryReport> for RecoveryJson {
    fn from(r: &RecoveryReport) -> Self {
        RecoveryJson {
            node: r.node.clone(),
            old_voters: r.old_voters.clone(),
            answered: r.answered.clone(),
            entry: r.entry,
            names: r.names,
        }
    }
}

/// `ctl registry --json`: exactly these fields, in this order (independent of how the
/// library's [`RegistryStatus`] grows).
#[derive(Serialize)]
struct RegistryJson {
    /// The Raft id of the node that answered.
    raft_id: Option<u64>,
    leader: Option<String>,
    voters: Vec<String>,
    learners: Vec<String>,
    term: u64,
    /// `[term, index]` of the last log entry.
    last_log: Option<(u64, u64)>,
    applied: u64,
    names: usize,
}

impl From<&RegistryStatus> for RegistryJson {
    fn from(s: &RegistryStatus) -> Self {
        RegistryJson {
            raft_id: s.raft_id,
            leader: s.leader.clone(),
            voters: s.voters.clone(),
            learners: s.learners.clone(),
            term: s.term,
            last_log: s.last_log,
            applied: s.applied,
            names: s.names,
        }
    }
}
