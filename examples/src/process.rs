//! A node running as a child process, as `tour` and the multi-process tests use it.
//!
//! The child must be the `node` program (or `tour --child`), started with
//! `--exit-on-stdin-close`: [`NodeProcess::spawn`] reads its `READY <name> <addr>` line,
//! [`NodeProcess::stop`] closes its stdin to make it shut down, and [`NodeProcess::leave`]
//! writes `leave` to it to make it leave the cluster gracefully. Dropping a `NodeProcess`
//! kills the child, so an early return or a panic never leaves nodes behind.
//!
//! [`example_binaries`] builds the example programs with cargo and says where they are, for
//! tests that run them.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why a node process could not be started or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started, or waiting for it failed.
    Io(std::io::Error),
    /// The child exited (or closed stdout) before printing its `READY` line.
    ExitedEarly {
        /// Node name.
        name: String,
        /// Its exit status, if it had exited by the time we looked.
        status: Option<ExitStatus>,
    },
    /// No `READY` line within the deadline; the child has been killed.
    NotReady {
        /// Node name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The first line on stdout was not `READY <name> <addr>`.
    BadReadyLine(String),
    /// Building the example programs failed; cargo's messages are on stderr.
    Build(String),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Io(e) => write!(f, "node process: {e}"),
            ProcessError::ExitedEarly { name, status } => match status {
                Some(s) => write!(f, "node {name} exited before it was ready ({s})"),
                None => write!(f, "node {name} closed stdout before it was ready"),
            },
            ProcessError::NotReady { name, waited } => {
                write!(f, "node {name} was not ready within {waited:?}")
            }
            ProcessError::BadReadyLine(line) => {
                write!(f, "expected `READY <name> <addr>`, got {line:?}")
            }
            ProcessError::Build(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ProcessError {
    fn from(e: std::io::Error) -> Self {
        ProcessError::Io(e)
    }
}

/// A running node child process. Killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    name: String,
    addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl NodeProcess {
    /// Starts `command` with piped stdin and stdout (stderr is inherited, so the child's logs
    /// and errors stay visible) and waits up to `timeout` for its `READY` line.
    pub fn spawn(
        name: &str,
        mut command: Command,
        timeout: Duration,
    ) -> Result<Self, ProcessError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // From here on `guard` kills the child on every early return.
        let mut guard = NodeProcess {
            name: name.to_owned(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            child,
            stdin,
        };
        let Some(stdout) = stdout else {
            return Err(ProcessError::Io(std::io::Error::other("stdout not piped")));
        };

        let (tx, rx) = mpsc::channel();
        let label = name.to_owned();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = tx.send(lines.next());
                // Keep draining so the child never blocks on a full pipe; anything it prints
                // later is shown with its name.
                for line in lines.map_while(Result::ok) {
                    println!("[{label}] {line}");
                }
            })?;

        match rx.recv_timeout(timeout) {
            Ok(Some(Ok(line))) => {
                guard.addr = parse_ready(name, &line)?;
                Ok(guard)
            }
            Ok(Some(Err(e))) => Err(ProcessError::Io(e)),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Give a failing child a moment to finish exiting, so its status can be
                // reported; it has closed stdout, so it is on its way out.
                let status = guard.wait_until(Instant::now() + Duration::from_secs(2))?;
                Err(ProcessError::ExitedEarly {
                    name: name.to_owned(),
                    status,
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ProcessError::NotReady {
                name: name.to_owned(),
                waited: timeout,
            }),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address from its `READY` line: where peers reach it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL, a crash as far as its peers can tell, and reaps it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        self.child.wait()
    }

    /// Asks the node to leave the cluster gracefully (by closing its stdin) and waits up to
    /// `timeout` for it to exit; kills it if it does not.
    ///
    /// Returns the exit status, or `None` if it had to be killed.
    pub fn stop(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        drop(self.stdin.take());
        let status = self.wait_until(Instant::now() + timeout)?;
        if status.is_none() {
            self.kill()?;
        }
        Ok(status)
    }

    /// Asks the node to leave the cluster gracefully with a `leave` line on its stdin (others
    /// see it Leaving, then Left) and waits up to `timeout` for it to exit; kills it if it
    /// does not.
    ///
    /// Returns the exit status, or `None` if it had to be killed.
    pub fn leave(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(std::io::Error::other("stdin already closed"));
        };
        stdin.write_all(b"leave\n")?;
        stdin.flush()?;
        let status = self.wait_until(Instant::now() + timeout)?;
        if status.is_none() {
            self.kill()?;
        }
        Ok(status)
    }

    /// The exit status once the child has exited, or `None` at the deadline.
    fn wait_until(&mut self, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // std offers no wait-with-timeout; a short poll bounded by the deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Builds the example programs `bins` (such as `node`, `ctl`) with cargo, in the profile this
/// code was built in, and returns each one's path as cargo reports it (so `CARGO_TARGET_DIR`,
/// `build.target-dir` and the like are all respected). Cargo's own messages go to stderr.
pub fn example_binaries(bins: &[&str]) -> Result<HashMap<String, PathBuf>, ProcessError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "actix-cluster-examples"])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    // Cargo describes the crate being tested to it through the environment; passed on, those
    // variables look like a change to build scripts that watch them (ring watches
    // CARGO_MANIFEST_DIR) and would rebuild half the tree on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_crate = [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ];
        if per_crate.contains(&&*key)
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
        {
            cmd.env_remove(&*key);
        }
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(ProcessError::Build(format!(
            "cargo build of {bins:?} failed ({})",
            out.status
        )));
    }
    let mut found = HashMap::new();
    for msg in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
    {
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
            && bins.contains(&name)
        {
            found.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    match bins.iter().find(|b| !found.contains_key(**b)) {
        Some(missing) => Err(ProcessError::Build(format!(
            "cargo reported no `{missing}` executable"
        ))),
        None => Ok(found),
    }
}

fn parse_ready(name: &str, line: &str) -> Result<SocketAddr, ProcessError> {
    let bad = || ProcessError::BadReadyLine(line.to_owned());
    let mut words = line.split_whitespace();
    if words.next() != Some("READY") || words.next() != Some(name) {
        return Err(bad());
    }
    let addr = words.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_must_name_the_node_and_an_address() {
        assert_eq!(
            parse_ready("n1", "READY n1 127.0.0.1:7000").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 7000)))
        );
        for line in [
            "READY n2 127.0.0.1:7000",
            "READY n1",
            "READY n1 nowhere",
            "ready n1 127.0.0.1:7000",
            "READY n1 127.0.0.1:7000 extra",
        ] {
            assert!(parse_ready("n1", line).is_err(), "{line}");
        }
    }
}
