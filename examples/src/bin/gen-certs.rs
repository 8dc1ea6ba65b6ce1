//! `gen-certs DIR --nodes a,b,c [--cluster C]`: a throwaway cluster CA and one certificate per
//! node, written as `DIR/<node>/{ca.pem,node.pem,node.key}` for `node --tls-dir DIR/<node>`.

use std::path::Path;
use std::process::ExitCode;

use actix_cluster_examples::args::{Args, UsageError};
use actix_cluster_testkit::TestCa;

const USAGE: &str = "\
usage: gen-certs DIR --nodes NAME,NAME,... [--cluster NAME]

Creates a new cluster CA and, for each node, DIR/<node>/{ca.pem,node.pem,node.key}: the
layout `node --tls-dir DIR/<node>` and `call --tls-dir DIR/<node>` read. Every certificate
names its node (DNS subjectAltName), so a node can only join under its own name.
The keys are for trying things out; provision production clusters with your own CA.

  --nodes LIST      comma-separated node names (include one for `call`, e.g. client)
  --cluster NAME    cluster name recorded in the CA's common name (default: demo)";

fn main() -> ExitCode {
    let (dir, nodes, cluster) = match parse() {
        Ok(parsed) => parsed,
        Err(e) => return e.report(USAGE),
    };
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let written = TestCa::new(&cluster).and_then(|ca| ca.write_node_dirs(Path::new(&dir), &names));
    if let Err(e) = written {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    println!("new CA for cluster {cluster:?}; wrote:");
    for node in &names {
        let node_dir = Path::new(&dir).join(node);
        for file in ["ca.pem", "node.pem", "node.key"] {
            println!("  {}", node_dir.join(file).display());
        }
    }
    ExitCode::SUCCESS
}

fn parse() -> Result<(String, Vec<String>, String), UsageError> {
    let args = Args::parse(std::env::args().skip(1), &["--nodes", "--cluster"], &[])?;
    let dir = match args.positionals() {
        [dir] => dir.clone(),
        [] => return Err(UsageError::invalid("DIR is required")),
        [_, extra, ..] => {
            return Err(UsageError::invalid(format!(
                "unexpected argument {extra:?}"
            )));
        }
    };
    let nodes = args.list("--nodes");
    if nodes.is_empty() {
        return Err(UsageError::invalid("--nodes needs at least one node name"));
    }
    let cluster = args.value("--cluster").unwrap_or("demo").to_owned();
    Ok((dir, nodes, cluster))
}
