//! The `node` program: one long-running cluster node hosting a [`Counter`]. It lives in the
//! library so that `tour` can run it as its own child processes.

use std::error::Error;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use actix_cluster::RegistryConfig;
use actix_cluster::prelude::*;

use crate::args::{Args, UsageError};
use crate::{COUNTER_NAME, Counter, Security};

/// Usage text of the `node` program.
pub const NODE_USAGE: &str = "\
usage: node --name NAME --listen IP:PORT (--tls-dir DIR | --insecure-plaintext)
            [--seeds IP:PORT,IP:PORT] [--cluster NAME] [--exit-on-stdin-close]
            [--architecture decentralized|centralized] [--masters IP:PORT,...]
            [--role worker|master] [--discovery gossip|static] [--preset lan|conservative]
            [--data-dir DIR] [--registry-voters N] [--registry-bootstrap-expect N]
            [--state-redis URL]

Runs one cluster node until SIGTERM or ctrl-c. It hosts a Counter (Add(u64) -> u64,
Get -> u64) under the local name `counter`, lets other nodes spawn Counters here, hosts
activations of the virtual actor Player, and prints `READY <name> <addr>` on stdout once
it accepts connections.

  --name NAME             node name; with TLS it must be a DNS name in node.pem
  --listen IP:PORT        address to listen on; port 0 picks a free port (see READY)
  --seeds LIST            comma-separated addresses of nodes to join
  --cluster NAME          cluster name, checked in the handshake (default: demo)
  --tls-dir DIR           mutual TLS with DIR/ca.pem, DIR/node.pem, DIR/node.key
  --insecure-plaintext    no TLS at all: for a trusted host only
  --architecture A        decentralized (default): peers share membership among
                          themselves; centralized: masters keep the member list
  --masters LIST          comma-separated addresses of the masters (centralized only,
                          required there; a master lists its own address too)
  --role ROLE             worker (default) or master (centralized only)
  --discovery D           gossip (default): SWIM gossip; static: every node dials every
                          node it learns and watches it with heartbeats
  --preset P              timing: lan (default, a crash is seen in about 2 s) or
                          conservative (slow or shared links, fewer false alarms)
  --data-dir DIR          keep the cluster-wide name registry's Raft log, vote and
                          snapshots in DIR (created if missing): a restarted node keeps
                          its Raft identity and catches up from its own log. Without it
                          the registry replica lives in memory and a restarted node
                          joins as a new Raft member
  --registry-voters N     number of registry voters: 1, 3 (default), 5 or 7; a Down
                          voter is replaced by a live spare, never dropped
  --registry-bootstrap-expect N
                          members (1, 3, 5 or 7, at most the voters) that must be up
                          before the registry forms, all of them its first voters;
                          default min(voters, 3). A one-node cluster says 1
  --state-redis URL       keep actor state (Player points) in this Redis server, shared
                          by the nodes, instead of the node's own store
  --exit-on-stdin-close   watch stdin: end of file shuts the node down, so a supervising
                          process that dies takes its nodes with it, and a line `leave`
                          makes it leave the cluster gracefully (others see it Left) and
                          exit 0";

/// A node's place in the cluster's architecture, from `--architecture`, `--role` and
/// `--masters` (shared by the programs that start nodes: `node`, and the test suite's
/// `fault-node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Decentralized (default) or centralized.
    pub architecture: Architecture,
    /// Worker (default) or master.
    pub role: NodeRole,
    /// The masters' addresses (centralized only, required there).
    pub masters: Vec<SocketAddr>,
}

impl Topology {
    /// Reads the three flags. Centralized-only settings are refused elsewhere rather than
    /// ignored: a node started with them by mistake would silently run another kind of cluster.
    pub fn from_args(args: &Args) -> Result<Self, UsageError> {
        let architecture = args.choice(
            "--architecture",
            &[
                ("decentralized", Architecture::Decentralized),
                ("centralized", Architecture::Centralized),
            ],
            Architecture::Decentralized,
        )?;
        let role = args.choice(
            "--role",
            &[("worker", NodeRole::Worker), ("master", NodeRole::Master)],
            NodeRole::Worker,
        )?;
        let masters = args
            .list("--masters")
            .iter()
            .map(|m| {
                m.parse::<SocketAddr>()
                    .map_err(|_| UsageError::invalid(format!("--masters: {m:?} is not IP:PORT")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let centralized = architecture == Architecture::Centralized;
        if centralized && masters.is_empty() {
            return Err(UsageError::invalid(
                "--architecture centralized needs --masters IP:PORT,...",
            ));
        }
        if !centralized && !masters.is_empty() {
            return Err(UsageError::invalid(
                "--masters only applies to --architecture centralized",
            ));
        }
        if !centralized && role == NodeRole::Master {
            return Err(UsageError::invalid(
                "--role master only applies to --architecture centralized",
            ));
        }
        Ok(Self {
            architecture,
            role,
            masters,
        })
    }
}

/// Timing preset of a node, as `--preset` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// [`ClusterConfig::lan`]: crashes are detected in about 2 s.
    #[default]
    Lan,
    /// [`ClusterConfig::conservative`]: slow or shared links.
    Conservative,
}

/// Everything the `node` program is told on its command line.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node name.
    pub name: String,
    /// Listen address.
    pub listen: String,
    /// Addresses of nodes to join.
    pub seeds: Vec<String>,
    /// Cluster name.
    pub cluster: String,
    /// TLS or plaintext.
    pub security: Security,
    /// Whether stdin is watched: end of file means "shut down", a line `leave` means "leave
    /// the cluster gracefully".
    pub exit_on_stdin_close: bool,
    /// Decentralized or centralized.
    pub architecture: Architecture,
    /// Masters of a centralized cluster.
    pub masters: Vec<SocketAddr>,
    /// Worker or master.
    pub role: NodeRole,
    /// Gossip or static discovery.
    pub discovery: DiscoveryMethod,
    /// Timing preset.
    pub preset: Preset,
    /// Where the registry keeps its Raft state (`--data-dir`); `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// Number of registry voters (`--registry-voters`); `None` keeps the library default.
    pub registry_voters: Option<usize>,
    /// Members the registry waits for before it forms (`--registry-bootstrap-expect`);
    /// `None` keeps the library default.
    pub registry_bootstrap_expect: Option<usize>,
    /// A Redis server for actor state (`--state-redis URL`), shared by the nodes; `None`
    /// keeps the node's own store.
    pub state_redis: Option<String>,
}

impl NodeOptions {
    /// Parses the `node` command line (without the program name).
    pub fn parse<I, S>(argv: I) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args = Args::parse(
            argv,
            &[
                "--name",
                "--listen",
                "--seeds",
                "--cluster",
                "--tls-dir",
                "--architecture",
                "--masters",
                "--role",
                "--discovery",
                "--preset",
                "--data-dir",
                "--registry-voters",
                "--registry-bootstrap-expect",
                "--state-redis",
            ],
            &["--insecure-plaintext", "--exit-on-stdin-close"],
        )?;
        if let Some(extra) = args.positionals().first() {
            return Err(UsageError::invalid(format!(
                "unexpected argument {extra:?}"
            )));
        }
        let discovery = args.choice(
            "--discovery",
            &[
                ("gossip", DiscoveryMethod::Gossip),
                ("static", DiscoveryMethod::Static),
            ],
            DiscoveryMethod::Gossip,
        )?;
        let preset = args.choice(
            "--preset",
            &[("lan", Preset::Lan), ("conservative", Preset::Conservative)],
            Preset::Lan,
        )?;
        let Topology {
            architecture,
            role,
            masters,
        } = Topology::from_args(&args)?;
        let data_dir: Option<PathBuf> = args.value("--data-dir").map(PathBuf::from);
        if data_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(UsageError::invalid("--data-dir needs a directory"));
        }
        let registry_voters: Option<usize> = args.parsed("--registry-voters")?;
        // Checked here with the library's own rule, so that a bad count is a usage error
        // (exit 2) rather than a node that fails to start (exit 1).
        if let Some(voters) = registry_voters {
            RegistryConfig::new()
                .voters(voters)
                .validate()
                .map_err(|e| UsageError::invalid(format!("--registry-voters {voters}: {e}")))?;
        }
        let registry_bootstrap_expect: Option<usize> =
            args.parsed("--registry-bootstrap-expect")?;
        if let Some(expect) = registry_bootstrap_expect {
            let mut config = RegistryConfig::new().bootstrap_expect(expect);
            if let Some(voters) = registry_voters {
                config = config.voters(voters);
            }
            config.validate().map_err(|e| {
                UsageError::invalid(format!("--registry-bootstrap-expect {expect}: {e}"))
            })?;
        }
        Ok(NodeOptions {
            name: args.required("--name")?.to_owned(),
            listen: args.required("--listen")?.to_owned(),
            seeds: args.list("--seeds"),
            cluster: args.cluster()?,
            security: Security::from_args(&args)?,
            exit_on_stdin_close: args.switch("--exit-on-stdin-close"),
            architecture,
            masters,
            role,
            discovery,
            preset,
            data_dir,
            registry_voters,
            registry_bootstrap_expect,
            state_redis: args.value("--state-redis").map(str::to_owned),
        })
    }

    /// The registry settings these options ask for.
    pub fn registry_config(&self) -> RegistryConfig {
        let mut config = RegistryConfig::new();
        if let Some(voters) = self.registry_voters {
            config = config.voters(voters);
        }
        if let Some(expect) = self.registry_bootstrap_expect {
            config = config.bootstrap_expect(expect);
        }
        match &self.data_dir {
            Some(dir) => config.durable(dir),
            None => config.ephemeral(),
        }
    }
}

/// The command line of a program that runs its nodes as copies of itself (`tour`,
/// `self-healing`) and takes no arguments: `Some(code)` when it is done before it starts —
/// it ran as a node (`--child ...`), printed `usage` (`-h`, `--help`), or refused an argument
/// (exit 2) — and `None` when it should go on.
pub fn child_or_no_arguments(usage: &str) -> Option<ExitCode> {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--child") {
        return Some(node_main(argv.skip(1)));
    }
    let arg = argv.next()?;
    if arg == "-h" || arg == "--help" {
        println!("{usage}");
        return Some(ExitCode::SUCCESS);
    }
    eprintln!("error: unexpected argument {arg:?}\n\n{usage}");
    Some(ExitCode::from(2))
}

/// The `node` program: parses `argv`, runs the node, and turns the outcome into an exit code
/// (2 for a bad command line, 1 for a node that could not start).
pub fn node_main<I, S>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    crate::init_tracing();
    let options = match NodeOptions::parse(argv) {
        Ok(o) => o,
        Err(e) => return e.report(NODE_USAGE),
    };
    match actix_rt::System::new().block_on(run_node(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the node, prints `READY <name> <addr>`, and runs until told to stop; then leaves the
/// cluster gracefully. Must run inside an actix `System`.
pub async fn run_node(options: NodeOptions) -> Result<(), Box<dyn Error>> {
    let preset = match options.preset {
        Preset::Lan => ClusterConfig::lan(),
        Preset::Conservative => ClusterConfig::conservative(),
    };
    let mut builder = preset
        .node_name(&options.name)
        .listen(&options.listen)
        .seed_nodes(options.seeds.iter().cloned())
        .architecture(options.architecture)
        .discovery(options.discovery)
        .node_role(options.role)
        .registry(options.registry_config());
    if !options.masters.is_empty() {
        builder = builder.master_nodes(options.masters.iter().map(ToString::to_string));
    }
    let config = options.security.apply(builder)?.build()?;
    // Signal handlers go in before READY, so that a supervisor which signals right after
    // READY never hits the default action (immediate death without leaving the cluster).
    let stop = stop_requested(options.exit_on_stdin_close)?;

    let _ = crate::NODE_NAME.set(options.name.clone());
    let mut builder = ClusterSystem::new(&options.cluster, config)
        .register::<Counter>()
        .register_virtual::<crate::Player>();
    if let Some(url) = &options.state_redis {
        builder = builder.state_store(actix_cluster::state::RedisStore::connect(url).await?);
    }
    let system = builder.start().await?;
    let counter = system.start_actor(Counter::default());
    system.register_local_name(COUNTER_NAME, &counter)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {} {}", options.name, system.local_addr())?;
    // A pipe is block-buffered: without the flush a supervisor would wait forever.
    stdout.flush()?;
    drop(stdout);

    let reason = stop.await;
    tracing::info!(node = %options.name, reason = reason.as_str(), "leaving the cluster");
    match reason {
        Stop::LeaveCommand => system.leave().await,
        Stop::Interrupted | Stop::Terminated | Stop::StdinClosed => system.shutdown().await,
    }
    Ok(())
}

/// Why the node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Interrupted,
    Terminated,
    StdinClosed,
    /// A line `leave` on stdin.
    LeaveCommand,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Interrupted => "interrupted",
            Stop::Terminated => "terminated",
            Stop::StdinClosed => "stdin closed",
            Stop::LeaveCommand => "leave requested on stdin",
        }
    }
}

/// Resolves with the reason once SIGINT, SIGTERM or (if asked) end of stdin or a `leave` line
/// arrives.
fn stop_requested(watch_stdin: bool) -> std::io::Result<impl std::future::Future<Output = Stop>> {
    #[cfg(unix)]
    let (mut sigint, mut sigterm) = {
        use actix_rt::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    // Stdin is only read when asked: a node started in the background of an interactive
    // shell that read its terminal would be stopped by SIGTTIN.
    let stdin_stop = if watch_stdin {
        let (tx, rx) = tokio::sync::oneshot::channel::<Stop>();
        // A blocking read needs its own thread; it ends with the process.
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let _ = tx.send(read_stdin_commands(std::io::stdin().lock()));
            })?;
        Some(rx)
    } else {
        None
    };
    Ok(async move {
        #[cfg(unix)]
        let (int, term) = (sigint.recv(), sigterm.recv());
        #[cfg(not(unix))]
        let (int, term) = (
            actix_rt::signal::ctrl_c(),
            std::future::pending::<Option<()>>(),
        );
        let stdin = async {
            match stdin_stop {
                // A watcher thread that died without a word counts as stdin closing.
                Some(rx) => rx.await.unwrap_or(Stop::StdinClosed),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => Stop::Interrupted,
            _ = term => Stop::Terminated,
            stop = stdin => stop,
        }
    })
}

/// Reads stdin line by line until a `leave` line ([`Stop::LeaveCommand`]) or end of file or a
/// read error ([`Stop::StdinClosed`]). Other lines are reported on stderr and ignored.
fn read_stdin_commands(input: impl BufRead) -> Stop {
    for line in input.lines() {
        let Ok(line) = line else {
            break;
        };
        match line.trim() {
            "leave" => return Stop::LeaveCommand,
            "" => {}
            other => eprintln!("node: ignoring unknown stdin command {other:?} (known: leave)"),
        }
    }
    Stop::StdinClosed
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_cluster::RegistryStorage;

    fn parse(extra: &[&str]) -> Result<NodeOptions, UsageError> {
        let base = [
            "--name",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--insecure-plaintext",
        ];
        NodeOptions::parse(base.iter().chain(extra).copied())
    }

    #[test]
    fn defaults_are_decentralized_gossip_lan_worker() {
        let o = parse(&[]).expect("parses");
        assert_eq!(o.architecture, Architecture::Decentralized);
        assert_eq!(o.discovery, DiscoveryMethod::Gossip);
        assert_eq!(o.preset, Preset::Lan);
        assert_eq!(o.role, NodeRole::Worker);
        assert!(o.masters.is_empty());
    }

    #[test]
    fn centralized_flags_are_read() {
        let o = parse(&[
            "--architecture",
            "centralized",
            "--masters",
            "127.0.0.1:7001,127.0.0.1:7002",
            "--role",
            "master",
            "--discovery",
            "static",
            "--preset",
            "conservative",
        ])
        .expect("parses");
        assert_eq!(o.architecture, Architecture::Centralized);
        assert_eq!(o.masters.len(), 2);
        assert_eq!(o.role, NodeRole::Master);
        assert_eq!(o.discovery, DiscoveryMethod::Static);
        assert_eq!(o.preset, Preset::Conservative);
    }

    #[test]
    fn bad_membership_flags_are_usage_errors() {
        for (extra, why) in [
            (&["--architecture", "mesh"][..], "--architecture \"mesh\""),
            (&["--discovery", "dns"][..], "--discovery \"dns\""),
            (&["--preset", "wan"][..], "--preset \"wan\""),
            (&["--role", "client"][..], "--role \"client\""),
            (&["--architecture", "centralized"][..], "needs --masters"),
            (&["--masters", "127.0.0.1:1"][..], "only applies"),
            (&["--role", "master"][..], "only applies"),
            (
                &["--architecture", "centralized", "--masters", "nowhere"][..],
                "not IP:PORT",
            ),
        ] {
            match parse(extra) {
                Err(UsageError::Invalid(msg)) => assert!(msg.contains(why), "{extra:?}: {msg}"),
                other => panic!("{extra:?}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn registry_is_ephemeral_by_default_and_durable_with_a_data_dir() {
        let o = parse(&[]).expect("parses");
        assert_eq!(o.registry_config().storage, RegistryStorage::Ephemeral);
        assert_eq!(o.registry_config().voters, RegistryConfig::new().voters);

        let o = parse(&["--data-dir", "/var/lib/n1", "--registry-voters", "5"]).expect("parses");
        assert_eq!(
            o.registry_config().storage,
            RegistryStorage::Durable("/var/lib/n1".into())
        );
        assert_eq!(o.registry_config().voters, 5);
    }

    #[test]
    fn bad_registry_flags_are_usage_errors() {
        for (extra, why) in [
            (&["--registry-voters", "4"][..], "--registry-voters 4"),
            (&["--registry-voters", "0"][..], "--registry-voters 0"),
            (
                &["--registry-voters", "three"][..],
                "--registry-voters \"three\"",
            ),
            (&["--data-dir", ""][..], "--data-dir"),
        ] {
            match parse(extra) {
                Err(UsageError::Invalid(msg)) => assert!(msg.contains(why), "{extra:?}: {msg}"),
                other => panic!("{extra:?}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn stdin_leave_line_is_a_graceful_leave_and_eof_a_shutdown() {
        assert_eq!(
            read_stdin_commands(&b"hello\n\n  leave \nmore\n"[..]),
            Stop::LeaveCommand
        );
        assert_eq!(read_stdin_commands(&b"hello\n"[..]), Stop::StdinClosed);
        assert_eq!(read_stdin_commands(&b""[..]), Stop::StdinClosed);
    }
}
