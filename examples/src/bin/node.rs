//! `node`: one long-running cluster node hosting a `Counter` under the local name `counter`.
//! Run `node --help` for its flags; `docs/examples.md` shows a three-node session.

fn main() -> std::process::ExitCode {
    actix_cluster_examples::node_main(std::env::args().skip(1))
}
