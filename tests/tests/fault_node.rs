//! `fault-node`, the fault harness's node program, answers registry commands over stdin and
//! stdout with the outcome the harness records: three processes form a registry; a
//! registration is `ok bound` to the slot actor, a second one of the same name `fail
//! NameTaken` naming the holder, a linearizable lookup and a register-or-get on other nodes
//! return that first binding, register-or-get of a free name binds the caller's slot,
//! unregister reports the binding it released and a lookup then `fail NotFound`; a malformed
//! line gets an `error` answer and the node carries on; end of stdin stops each process with
//! exit status 0.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_cluster_testkit::TEST_DEADLINE;

/// A `fault-node` child process; killed when dropped, so a failed assertion leaves none behind.
struct FaultNode {
    name: String,
    incarnation: u64,
    addr: SocketAddr,
    /// Actor ids of the slot actors, in slot order.
    slots: Vec<u64>,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines the child prints on stdout after `READY`.
    lines: mpsc::Receiver<String>,
    next_op: u64,
}

impl FaultNode {
    /// Starts `name` on a free port of 127.0.0.1, joining through `seed`, and waits for its
    /// `READY` line.
    fn start(cluster: &str, name: &str, seed: Option<SocketAddr>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fault-node"));
        cmd.args(["--name", name, "--listen", "127.0.0.1:0"]).args([
            "--cluster",
            cluster,
            "--voters",
            "3",
        ]);
        if let Some(seed) = seed {
            cmd.args(["--seeds", &seed.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fault-node");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut node = FaultNode {
            name: name.to_owned(),
            incarnation: 0,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            slots: Vec::new(),
            child,
            stdin,
            lines,
            next_op: 0,
        };
        let ready = node.next_line();
        let words: Vec<&str> = ready.split(' ').collect();
        let [ready_word, ready_name, incarnation, addr, ids] = words[..] else {
            panic!("{name}: bad READY line {ready:?}");
        };
        assert_eq!((ready_word, ready_name), ("READY", name), "{ready:?}");
        node.incarnation = incarnation.parse().expect("incarnation");
        node.addr = addr.parse().expect("listen address");
        node.slots = ids
            .split(',')
            .map(|id| id.parse().expect("actor id"))
            .collect();
        assert_eq!(node.slots.len(), 4, "four slots by default: {ready:?}");
        node
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TEST_DEADLINE)
            .unwrap_or_else(|e| panic!("{}: no line on stdout: {e}", self.name))
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write a command");
        stdin.flush().expect("flush a command");
    }

    /// Sends `command` under a fresh op-id and returns the answer without the op-id.
    fn ask(&mut self, command: &str) -> String {
        self.next_op += 1;
        let id = format!("{}-{}", self.name, self.next_op);
        self.send(&format!("{id} {command}"));
        let answer = self.next_line();
        answer
            .strip_prefix(&format!("{id} "))
            .unwrap_or_else(|| panic!("{}: answer to {id} expected, got {answer:?}", self.name))
            .to_owned()
    }

    /// The answer that names slot `slot` of this node, after `ok <what>`.
    fn binding(&self, what: &str, slot: usize) -> String {
        format!(
            "ok {what} {} {} {}",
            self.name, self.incarnation, self.slots[slot]
        )
    }

    /// Closes stdin and waits until `deadline` for the process to exit.
    fn stop(&mut self, deadline: Instant) -> Option<ExitStatus> {
        drop(self.stdin.take());
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for fault-node") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // std has no wait with a timeout; a short poll bounded by the deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FaultNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Looks a name nobody registers up on `node` until the answer is `fail NotFound`: the
/// registry has formed and a linearizable read works there.
fn wait_for_registry(node: &mut FaultNode) {
    let deadline = Instant::now() + TEST_DEADLINE;
    loop {
        let answer = node.ask("lookup probe");
        if answer.starts_with("fail NotFound ") {
            return;
        }
        // NotFormed answers at once; give the members time to see each other.
        assert!(
            Instant::now() < deadline,
            "{}: registry never formed, last answer {answer:?}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fault_node_answers_registry_commands_with_their_outcome() {
    let cluster = "fault-node";
    let mut n1 = FaultNode::start(cluster, "node-1", None);
    let seed = Some(n1.addr);
    let mut n2 = FaultNode::start(cluster, "node-2", seed);
    let mut n3 = FaultNode::start(cluster, "node-3", seed);
    for node in [&mut n1, &mut n2, &mut n3] {
        wait_for_registry(node);
    }

    let first = n2.binding("bound", 0);
    assert_eq!(n2.ask("register a 0"), first);
    let taken = n3.ask("register a 1");
    assert!(
        taken.starts_with("fail NameTaken node-2 "),
        "holder named first: {taken:?}"
    );
    assert_eq!(n1.ask("lookup a"), first, "linearizable lookup elsewhere");
    assert_eq!(n1.ask("register-or-get a 2"), first, "gets the holder");
    assert_eq!(
        n3.ask("register-or-get b 2"),
        n3.binding("bound", 2),
        "a free name binds the caller's slot"
    );

    // A malformed line is answered and changes nothing; the node carries on.
    let bad = n1.ask("register a");
    assert!(bad.starts_with("error "), "{bad:?}");
    n1.send("");
    assert_eq!(n1.next_line(), "- error empty line");

    assert_eq!(n1.ask("unregister a"), n2.binding("released", 0));
    let gone = n1.ask("lookup a");
    assert!(gone.starts_with("fail NotFound "), "{gone:?}");
    assert_eq!(n2.ask("unregister a"), "ok none");

    let deadline = Instant::now() + TEST_DEADLINE;
    for node in [&mut n1, &mut n2, &mut n3] {
        let status = node.stop(deadline);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} exits 0 at end of stdin: {status:?}",
            node.name
        );
    }
}
