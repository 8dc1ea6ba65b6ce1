//! The `node` program: one long-running cluster node hosting a [`Counter`]. It lives in the
//! library so that `tour` can run it as its own child processes.

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use actix_cluster::prelude::*;

use crate::args::{Args, UsageError};
use crate::{COUNTER_NAME, Counter, Security};

/// Usage text of the `node` program.
pub const NODE_USAGE: &str = "\
usage: node --name NAME --listen IP:PORT (--tls-dir DIR | --insecure-plaintext)
            [--seeds IP:PORT,IP:PORT] [--cluster NAME] [--exit-on-stdin-close]

Runs one cluster node until SIGTERM or ctrl-c. It hosts a Counter (Add(u64) -> u64,
Get -> u64) under the local name `counter`, lets other nodes spawn Counters here, and
prints `READY <name> <addr>` on stdout once it accepts connections.

  --name NAME             node name; with TLS it must be a DNS name in node.pem
  --listen IP:PORT        address to listen on; port 0 picks a free port (see READY)
  --seeds LIST            comma-separated addresses of nodes to join
  --cluster NAME          cluster name, checked in the handshake (default: demo)
  --tls-dir DIR           mutual TLS with DIR/ca.pem, DIR/node.pem, DIR/node.key
  --insecure-plaintext    no TLS at all: for a trusted host only
  --exit-on-stdin-close   also shut down gracefully when stdin reaches end of file, so a
                          supervising process that dies takes its nodes with it";

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
    /// Whether end of file on stdin means "shut down".
    pub exit_on_stdin_close: bool,
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
            &["--name", "--listen", "--seeds", "--cluster", "--tls-dir"],
            &["--insecure-plaintext", "--exit-on-stdin-close"],
        )?;
        if let Some(extra) = args.positionals().first() {
            return Err(UsageError::invalid(format!(
                "unexpected argument {extra:?}"
            )));
        }
        Ok(NodeOptions {
            name: args.required("--name")?.to_owned(),
            listen: args.required("--listen")?.to_owned(),
            seeds: args.list("--seeds"),
            cluster: args.value("--cluster").unwrap_or("demo").to_owned(),
            security: Security::from_args(&args)?,
            exit_on_stdin_close: args.switch("--exit-on-stdin-close"),
        })
    }
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
    let builder = ClusterConfig::new()
        .node_name(&options.name)
        .listen(&options.listen)
        .seed_nodes(options.seeds.iter().cloned());
    let config = options.security.apply(builder)?.build()?;
    // Signal handlers go in before READY, so that a supervisor which signals right after
    // READY never hits the default action (immediate death without leaving the cluster).
    let stop = stop_requested(options.exit_on_stdin_close)?;

    let system = ClusterSystem::new(&options.cluster, config)
        .register::<Counter>()
        .start()
        .await?;
    let counter = system.start_actor(Counter::default());
    system.register_local_name(COUNTER_NAME, &counter)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {} {}", options.name, system.local_addr())?;
    // A pipe is block-buffered: without the flush a supervisor would wait forever.
    stdout.flush()?;
    drop(stdout);

    let reason = stop.await;
    tracing::info!(node = %options.name, reason, "leaving the cluster");
    system.shutdown().await;
    Ok(())
}

/// Resolves with the reason once SIGINT, SIGTERM or (if asked) end of stdin arrives.
fn stop_requested(
    watch_stdin: bool,
) -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    #[cfg(unix)]
    let (mut sigint, mut sigterm) = {
        use actix_rt::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let stdin_closed = if watch_stdin {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A blocking read needs its own thread; it ends with the process.
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin().lock();
                while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
                let _ = tx.send(());
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
            match stdin_closed {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => "interrupted",
            _ = term => "terminated",
            () = stdin => "stdin closed",
        }
    })
}
