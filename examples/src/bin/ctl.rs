//! `ctl`: operator commands against a running cluster, run as a short-lived client node.
//!
//! ```text
//! ctl status --seed 127.0.0.1:7001 --insecure-plaintext [--json]
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use actix_cluster::LoadReport;
use actix_cluster::prelude::*;
use actix_cluster_examples::args::{Args, UsageError};
use actix_cluster_examples::{Security, client_node_name, error_kind, init_tracing};
use serde::Serialize;

const USAGE: &str = "\
usage: ctl COMMAND [FLAGS]

Operator commands against a running cluster. ctl joins the cluster as a short-lived client
node through one node's address, asks that node, prints the answer and leaves.

commands:
  status    the member table as one node sees it

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

fn main() -> ExitCode {
    init_tracing();
    let mut argv = std::env::args().skip(1);
    // Each command parses its own flags, so that later commands can take others.
    match argv.next().as_deref() {
        Some("status") => status_main(argv),
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

impl Connect {
    fn from_args(args: &Args) -> Result<Self, UsageError> {
        Ok(Connect {
            seed: args
                .parsed("--seed")?
                .ok_or_else(|| UsageError::invalid("--seed IP:PORT is required"))?,
            cluster: args.value("--cluster").unwrap_or("demo").to_owned(),
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

fn status_main(argv: impl Iterator<Item = String>) -> ExitCode {
    let parsed =
        Args::parse(argv, &CONNECT_VALUES, &["--insecure-plaintext", "--json"]).and_then(|args| {
            if let Some(extra) = args.positionals().first() {
                return Err(UsageError::invalid(format!(
                    "unexpected argument {extra:?}"
                )));
            }
            Ok((Connect::from_args(&args)?, args.switch("--json")))
        });
    let (connect, json) = match parsed {
        Ok(p) => p,
        Err(e) => return e.report(STATUS_USAGE),
    };
    match actix_rt::System::new().block_on(status(connect, json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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

/// The human table: one row per member, columns padded to the widest cell.
fn table(members: &[Member]) -> String {
    let header = [
        "NAME",
        "INCARNATION",
        "ADDR",
        "ROLE",
        "STATE",
        "PHI",
        "LOAD",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = members
        .iter()
        .map(|m| {
            [
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
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
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
