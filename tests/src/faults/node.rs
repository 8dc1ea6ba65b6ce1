//! A `fault-node` process on one host, driven over its stdin and stdout.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checker::{Actor, Seen};
use super::hosts::Net;

/// How a node is started: the parts of its command line that do not change across restarts.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Host index in the [`Net`].
    pub host: usize,
    /// Port it listens on, on its host's address.
    pub port: u16,
    /// Further flags (cluster, seeds, architecture, registry settings).
    pub args: Vec<String>,
    /// Its durable registry directory, if any.
    pub data_dir: Option<PathBuf>,
}

/// Why a node could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Starting it, or talking to it, failed.
    #[error("{node}: {detail}")]
    Io {
        /// Node name.
        node: String,
        /// What failed.
        detail: String,
    },
    /// Its first line was not a `READY` line, or none came in time.
    #[error("{node} did not start: {detail}")]
    NotReady {
        /// Node name.
        node: String,
        /// What it printed or how long we waited.
        detail: String,
    },
}

type Pending = Arc<Mutex<HashMap<u64, Sender<(Instant, String)>>>>;

/// Down verdicts the nodes printed (`- down <node> <incarnation>`), with the instant each line
/// was read; shared by every node of a run.
pub type Downs = Arc<Mutex<Vec<(Instant, String, u64)>>>;

/// Activation reports the nodes printed (`- act start|stop <name> <node> <incarnation> <seq>`),
/// after `- act `, with the instant each line was read; shared by every node of a run.
pub type Ledger = Arc<Mutex<Vec<(Instant, String)>>>;

/// A running node process.
pub struct Node {
    /// Its start specification.
    pub spec: NodeSpec,
    /// Incarnation it reported.
    pub incarnation: u64,
    /// Its slot actors, by slot.
    pub slots: Vec<Actor>,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pending: Pending,
    paused: AtomicBool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.spec.name)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts `spec` on its host with `program` (the `fault-node` binary) and waits for its
    /// `READY` line.
    pub fn start(
        net: &Net,
        program: &Path,
        spec: NodeSpec,
        timeout: Duration,
        downs: &Downs,
        ledger: &Ledger,
    ) -> Result<Node, NodeError> {
        let io = |detail: String| NodeError::Io {
            node: spec.name.clone(),
            detail,
        };
        let mut cmd = net
            .command(spec.host, program)
            .map_err(|e| io(e.to_string()))?;
        let addr = net.addr(spec.host).map_err(|e| io(e.to_string()))?;
        cmd.args(["--name", &spec.name])
            .args(["--listen", &format!("{addr}:{}", spec.port)])
            .args(&spec.args);
        if let Some(dir) = &spec.data_dir {
            cmd.arg("--data-dir").arg(dir);
        }
        // `FAULT_NODE_LOGS=DIR` keeps each node's log (its stderr) in `DIR/<node>.log`,
        // appended across restarts, for the investigation of a failed run.
        let stderr = match std::env::var_os("FAULT_NODE_LOGS") {
            Some(dir) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join(format!("{}.log", spec.name)))
                .map_or_else(|_| Stdio::null(), Stdio::from),
            None => Stdio::null(),
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| io(format!("spawn: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| io("no stdout".into()))?;
        let stdin = child.stdin.take();
        let (ready_tx, ready_rx) = channel::<String>();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let answers = Arc::clone(&pending);
        let downs = Arc::clone(downs);
        let ledger = Arc::clone(ledger);
        std::thread::Builder::new()
            .name(format!("out-{}", spec.name))
            .spawn(move || {
                read_answers(BufReader::new(stdout), &ready_tx, &answers, &downs, &ledger)
            })
            .map_err(|e| io(format!("reader thread: {e}")))?;
        let not_ready = |detail: String| NodeError::NotReady {
            node: spec.name.clone(),
            detail,
        };
        let line = match ready_rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(not_ready(format!("no READY line within {timeout:?}")));
            }
        };
        let (incarnation, slots) = match parse_ready(&line, &spec.name) {
            Some(v) => v,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(not_ready(format!("first line {line:?}")));
            }
        };
        let slots = slots
            .into_iter()
            .map(|id| Actor {
                node: spec.name.clone(),
                incarnation,
                id,
            })
            .collect();
        Ok(Node {
            spec,
            incarnation,
            slots,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pending,
            paused: AtomicBool::new(false),
        })
    }

    /// Sends command `line` as operation `op`; the answer arrives on the returned channel
    /// with the instant it was read. The channel closes without an answer if the process
    /// dies first.
    pub fn send(&self, op: u64, line: &str) -> Receiver<(Instant, String)> {
        let (tx, rx) = channel();
        lock(&self.pending).insert(op, tx);
        let mut stdin = lock(&self.stdin);
        let written = stdin
            .as_mut()
            .is_some_and(|s| writeln!(s, "{op} {line}").and_then(|()| s.flush()).is_ok());
        if !written {
            lock(&self.pending).remove(&op);
        }
        rx
    }

    /// `kill -9`.
    pub fn kill(&self) {
        self.resume();
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
        drop(child);
        lock(&self.stdin).take();
    }

    /// `SIGSTOP`.
    pub fn pause(&self) {
        let pid = lock(&self.child).id();
        if signal(pid, "STOP") {
            self.paused.store(true, Ordering::Release);
        }
    }

    /// `SIGCONT`, if paused.
    pub fn resume(&self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            let pid = lock(&self.child).id();
            signal(pid, "CONT");
        }
    }

    /// Closes stdin (a graceful stop) and waits up to `timeout`, then kills.
    pub fn stop(&self, timeout: Duration) {
        self.resume();
        lock(&self.stdin).take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(lock(&self.child).try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `m`'s guard, poisoned or not (a panicking client thread must not hide the history).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal(pid: u32, name: &str) -> bool {
    std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// `READY <name> <incarnation> <addr> <id0>,<id1>,...`
fn parse_ready(line: &str, name: &str) -> Option<(u64, Vec<u64>)> {
    let mut words = line.split_whitespace();
    if words.next()? != "READY" || words.next()? != name {
        return None;
    }
    let incarnation = words.next()?.parse().ok()?;
    let _addr = words.next()?;
    let slots = words
        .next()?
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<u64>, _>>()
        .ok()?;
    Some((incarnation, slots))
}

fn read_answers(
    out: impl BufRead,
    ready: &Sender<String>,
    pending: &Pending,
    downs: &Downs,
    ledger: &Ledger,
) {
    let mut lines = out.lines();
    match lines.next() {
        Some(Ok(line)) => {
            let _ = ready.send(line);
        }
        _ => return,
    }
    for line in lines {
        let Ok(line) = line else {
            break;
        };
        let at = Instant::now();
        if let Some(act) = line.strip_prefix("- act ") {
            lock(ledger).push((at, act.to_owned()));
            continue;
        }
        if let Some(down) = line.strip_prefix("- down ") {
            let mut words = down.split_whitespace();
            if let (Some(node), Some(Ok(incarnation))) =
                (words.next(), words.next().map(str::parse))
            {
                lock(downs).push((at, node.to_owned(), incarnation));
            }
            continue;
        }
        let Some((op, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(op) = op.parse::<u64>() else {
            continue;
        };
        if let Some(tx) = lock(pending).remove(&op) {
            let _ = tx.send((at, rest.to_owned()));
        }
    }
    // The process is gone: every waiting operation learns it by its channel closing.
    lock(pending).clear();
}

/// What an answer line (after the op id) says, for the checker.
pub fn seen(answer: &str) -> Seen {
    let words: Vec<&str> = answer.split_whitespace().collect();
    let actor = |w: &[&str]| -> Option<Actor> {
        Some(Actor {
            node: (*w.first()?).to_owned(),
            incarnation: w.get(1)?.parse().ok()?,
            id: w.get(2)?.parse().ok()?,
        })
    };
    match words.as_slice() {
        ["ok", "bound", rest @ ..] => actor(rest).map_or(Seen::Unknown, Seen::Bound),
        ["ok", "released", rest @ ..] => actor(rest).map_or(Seen::Unknown, Seen::Released),
        ["ok", "none", ..] => Seen::Nothing,
        ["fail", "NameTaken", ..] => Seen::Taken,
        ["fail", "NotFound", ..] => Seen::NotFound,
        ["fail", ..] => Seen::Failed,
        _ => Seen::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_what_the_checker_compares() {
        let a = Actor {
            node: "n1".into(),
            incarnation: 7,
            id: 3,
        };
        assert_eq!(seen("ok bound n1 7 3"), Seen::Bound(a.clone()));
        assert_eq!(seen("ok released n1 7 3"), Seen::Released(a));
        assert_eq!(seen("ok none"), Seen::Nothing);
        assert_eq!(seen("fail NameTaken n2 held"), Seen::Taken);
        assert_eq!(seen("fail NotFound x"), Seen::NotFound);
        assert_eq!(seen("fail NoQuorum no"), Seen::Failed);
        assert_eq!(seen("info Timeout t"), Seen::Unknown);
        assert_eq!(seen("ok bound n1 x 3"), Seen::Unknown);
        assert_eq!(
            parse_ready("READY n1 9 10.0.0.1:7000 1,2,3", "n1"),
            Some((9, vec![1, 2, 3]))
        );
        assert_eq!(parse_ready("READY n2 9 a 1", "n1"), None);
    }
}
