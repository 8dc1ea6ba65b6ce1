//! `faults::hosts`: hosts in network namespaces reach each other and the root; a cut drops one
//! direction of one link, established connections included, while every other link works;
//! `heal` restores it; loss drops some but not all datagrams; a delay slows the connections
//! one host opens to another, those open before it included (they are reset and reconnect),
//! until `heal` stops its relay; a dropped net leaves nothing behind, and a crashed run's
//! leftovers never stop the next run.
//!
//! Needs root, iproute2 (`ip netns`) and iptables: without them these tests fail, they do not
//! skip. No probe tool (nc, socat, ping) is assumed: each host runs an *agent*, this very test
//! executable started inside the namespace with `ACF_HOSTS_TEST_AGENT` set, which serves TCP
//! and UDP echo and runs probes on command.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_cluster_tests::faults::hosts::{HostError, Net};

/// Set in an agent's environment; its presence turns [`agent_entry_point`] into the agent.
const AGENT: &str = "ACF_HOSTS_TEST_AGENT";

/// Where every agent serves TCP and UDP echo (each in its own namespace, so no clash).
const PORT: u16 = 7000;

/// How long a probe waits for a connection or an echo before calling the link cut.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Datagrams per UDP burst.
const BURST: usize = 200;

/// The delay the delay tests add to each direction: round trips on the machine are well below
/// it, and twice it fits in an `rtt` probe's timeout with room to spare.
const DELAY: Duration = Duration::from_millis(150);

/// What an agent's server sends unasked on `greet`.
const GREETING: &[u8; 4] = b"helo";

/// How long an `rtt` probe waits for its echo.
const RTT_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn hosts_reach_each_other_until_a_cut_and_lose_part_of_a_lossy_link() {
    let run = format!("t{}", std::process::id());
    let net = create(&run, 3);
    let at = |host| format!("{}:{PORT}", net.addr(host).expect("host"));
    let root = root_echo_server(net.root_addr());
    {
        let mut agents = (0..net.len())
            .map(|host| Agent::start(&net, host))
            .collect::<Vec<_>>();

        // Every path works: host to host, loopback, host to root, root to host.
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok", "0 -> 1");
        assert_eq!(agents[0].ask("echo"), "ok", "0 -> 1");
        let loopback = format!("connect 127.0.0.1:{PORT}");
        assert_eq!(agents[1].ask(&loopback), "ok", "loopback");
        assert_eq!(agents[1].ask("echo"), "ok", "loopback");
        assert_eq!(agents[1].ask(&format!("connect {root}")), "ok", "1 -> root");
        assert_eq!(agents[1].ask("echo"), "ok", "1 -> root");
        assert_eq!(root_probe(&at(1)), "ok", "root -> 1");

        // A cut 0 -> 1 silences the open connection and refuses new ones by timing out;
        // 2 -> 1 and root -> 1 are untouched.
        net.cut(0, 1).expect("cut");
        net.cut(0, 1).expect("cut is idempotent");
        assert_eq!(
            agents[0].ask("echo"),
            "timeout",
            "established 0 -> 1 after the cut"
        );
        assert_eq!(
            agents[0].ask(&format!("connect {}", at(1))),
            "timeout",
            "new 0 -> 1"
        );
        assert_eq!(agents[2].ask(&format!("connect {}", at(1))), "ok", "2 -> 1");
        assert_eq!(agents[2].ask("echo"), "ok", "2 -> 1");
        assert_eq!(root_probe(&at(1)), "ok", "root -> 1 during the cut");

        net.heal().expect("heal");
        assert_eq!(
            agents[0].ask(&format!("connect {}", at(1))),
            "ok",
            "0 -> 1 healed"
        );
        assert_eq!(agents[0].ask("echo"), "ok", "0 -> 1 healed");

        // A partition isolates its side from the rest only.
        net.partition(&[0]).expect("partition");
        assert_eq!(
            agents[2].ask(&format!("connect {}", at(0))),
            "timeout",
            "2 -> 0"
        );
        assert_eq!(agents[2].ask(&format!("connect {}", at(1))), "ok", "2 -> 1");
        net.heal().expect("heal");

        // Loss: all of a burst arrives on a clean link, some but far from all on a lossy one.
        // Echoes travel 1 -> 0, which the loss rule leaves alone, so echoes count arrivals.
        // "Nearly all" allows a socket buffer overflowing on a loaded machine; the lossy bound
        // (half expected, 150 is 7 standard deviations out) cannot be met by such accidents.
        let burst = |agent: &mut Agent, to| {
            let reply = agent.ask(&format!("udp {} {BURST}", at(to)));
            let count = reply.strip_prefix("received ").and_then(|n| n.parse().ok());
            count.unwrap_or_else(|| panic!("unexpected agent reply {reply:?}"))
        };
        let nearly_all = BURST * 95 / 100;
        let clean: usize = burst(&mut agents[0], 1);
        assert!(
            clean >= nearly_all,
            "{clean} of {BURST} arrived on a clean link"
        );
        net.loss(0, 1, 0.5).expect("loss");
        let lossy = burst(&mut agents[0], 1);
        assert!(
            lossy > 0 && lossy <= BURST * 3 / 4,
            "{lossy} of {BURST} arrived at 50% loss"
        );
        let other = burst(&mut agents[2], 1);
        assert!(other >= nearly_all, "{other} of {BURST} arrived on 2 -> 1");
        net.heal().expect("heal");
        let healed = burst(&mut agents[0], 1);
        assert!(
            healed >= nearly_all,
            "{healed} of {BURST} arrived after heal"
        );
        eprintln!(
            "of {BURST} datagrams: {clean} clean, {lossy} lossy, {other} 2 -> 1, {healed} healed"
        );
    }
    drop(net);
    assert_gone(&run, 3);
}

#[test]
fn a_delay_slows_the_connections_one_host_opens_to_another_until_healed() {
    let run = format!("y{}", std::process::id());
    let net = create(&run, 3);
    let at = |host| format!("{}:{PORT}", net.addr(host).expect("host"));
    {
        let mut agents = (0..net.len())
            .map(|host| Agent::start(&net, host))
            .collect::<Vec<_>>();
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok");
        let clean = agents[0].rtt();
        assert!(clean < DELAY, "0 -> 1 before the delay: {clean:?}");
        assert_eq!(agents[0].listening(), [PORT], "host 0 before the delay");

        // Through the relay, each direction takes the delay.
        net.delay(0, 1, DELAY).expect("delay");
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok");
        let delayed = agents[0].rtt();
        assert!(
            delayed >= 2 * DELAY,
            "0 -> 1 delayed by {DELAY:?}: {delayed:?}"
        );
        assert_eq!(agents[0].listening().len(), 2, "host 0 runs a relay");

        // Other links, and connections the other host opens, are left alone.
        assert_eq!(agents[2].ask(&format!("connect {}", at(1))), "ok");
        let other = agents[2].rtt();
        assert!(other < DELAY, "2 -> 1: {other:?}");
        assert_eq!(agents[1].ask(&format!("connect {}", at(0))), "ok");
        let back = agents[1].rtt();
        assert!(back < DELAY, "1 -> 0, opened by 1: {back:?}");

        // A new delay on the same link applies to the open connection, without a reset.
        net.delay(0, 1, 2 * DELAY).expect("delay again");
        let longer = agents[0].rtt();
        assert!(
            longer >= 4 * DELAY,
            "0 -> 1 delayed by twice as much: {longer:?}"
        );

        // Heal closes the relayed connection and frees the relay's port; a new connection is
        // direct.
        net.heal().expect("heal");
        let closed = agents[0].ask("echo");
        assert!(
            closed == "closed" || closed == "reset",
            "a relayed connection after heal: {closed}"
        );
        assert_eq!(agents[0].listening(), [PORT], "host 0 after heal");
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok");
        let healed = agents[0].rtt();
        assert!(healed < DELAY, "0 -> 1 healed: {healed:?}");
        eprintln!(
            "round trips 0 -> 1: {clean:?} clean, {delayed:?} at {DELAY:?}, {longer:?} at \
             twice that, {healed:?} healed"
        );

        assert!(matches!(
            net.delay(0, 1, Duration::ZERO),
            Err(HostError::InvalidDelay { .. })
        ));
        assert!(matches!(
            net.delay(1, 1, DELAY),
            Err(HostError::SameHost { host: 1 })
        ));
    }
    drop(net);
    assert_gone(&run, 3);
}

#[test]
fn connections_open_before_a_delay_are_reset_and_reconnect_through_it() {
    let run = format!("z{}", std::process::id());
    let net = create(&run, 2);
    let at = |host| format!("{}:{PORT}", net.addr(host).expect("host"));
    {
        let mut agents = (0..net.len())
            .map(|host| Agent::start(&net, host))
            .collect::<Vec<_>>();
        // One connection opened each way.
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok");
        assert_eq!(agents[1].ask(&format!("connect {}", at(0))), "ok");
        assert_eq!(agents[0].ask("echo"), "ok");
        assert_eq!(agents[1].ask("echo"), "ok");

        // Delaying 0 -> 1 resets the connection 0 opened, even when 1 speaks first on it (0's
        // acknowledgement is reset), rather than after a timeout, and leaves the one 1 opened
        // alone.
        net.delay(0, 1, DELAY).expect("delay");
        assert_eq!(agents[1].ask("greet"), "greeted 1");
        assert_eq!(
            agents[0].ask("echo"),
            "reset",
            "opened by 0 before the delay"
        );
        let untouched = agents[1].rtt();
        assert!(untouched < DELAY, "opened by 1: {untouched:?}");
        assert_eq!(agents[0].ask(&format!("connect {}", at(1))), "ok");
        let reconnected = agents[0].rtt();
        assert!(reconnected >= 2 * DELAY, "0 reconnected: {reconnected:?}");

        // The other way too, as the nemesis's delay does.
        net.delay(1, 0, DELAY).expect("delay");
        assert_eq!(agents[0].ask("greet"), "greeted 1");
        assert_eq!(
            agents[1].ask("echo"),
            "reset",
            "opened by 1 before its delay"
        );
        assert_eq!(agents[1].ask(&format!("connect {}", at(0))), "ok");
        let both = agents[1].rtt();
        assert!(both >= 2 * DELAY, "1 reconnected: {both:?}");
        let still = agents[0].rtt();
        assert!(
            still >= 2 * DELAY,
            "0's relayed connection is kept: {still:?}"
        );
    }
    // Dropped with its delays in force: the relays stop with it.
    drop(net);
    assert_gone(&run, 2);
}

#[test]
fn a_dead_runs_leftovers_are_removed_and_a_live_run_is_left_alone() {
    let pid = std::process::id();
    let (dead, next) = (format!("d{pid}"), format!("n{pid}"));
    let record = format!("/run/acf-hosts/{dead}.pid");
    // Leftovers as a run killed midway leaves them, made under the lock `Net::create` sweeps
    // under: a concurrent sweep reads the records before it lists namespaces and links, so
    // a record naming this live process would not keep it off those made in between.
    std::fs::create_dir_all("/run/acf-hosts").expect("state dir");
    let lock = std::fs::File::create("/run/acf-hosts/lock").expect("lock file");
    lock.lock().expect("lock");
    let (ns, bridge) = (format!("acf{dead}h0"), format!("acf{dead}br"));
    let (veth, peer) = (format!("acf{dead}v0"), format!("acf{dead}p0"));
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
    sh(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
    ]);
    sh(&["ip", "link", "set", &peer, "netns", &ns]);
    sh(&["ip", "link", "set", &veth, "master", &bridge]);
    sh(&[
        "iptables", "-w", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
    ]);
    // The owner is dead: a pid that has exited (and, were it recycled, a start time of 1).
    let mut gone = Command::new("true").spawn().expect("spawn true");
    gone.wait().expect("wait");
    std::fs::write(&record, format!("{} 1\n", gone.id())).expect("record");
    drop(lock);

    let net = create(&next, 1);
    assert_gone(&dead, 1);
    assert!(
        matches!(Net::create(&next, 1), Err(HostError::InUse { pid: p, .. }) if p == pid),
        "a second net under a live run's token is refused"
    );
    drop(net);
    assert_gone(&next, 1);
}

/// Not a test: the body of an agent, which is this executable started in a host's namespace
/// with [`AGENT`] set. Without it (a normal test run) it returns at once.
#[test]
fn agent_entry_point() {
    if std::env::var_os(AGENT).is_some() {
        agent_main();
    }
}

fn create(run: &str, n: usize) -> Net {
    Net::create(run, n).unwrap_or_else(|e| {
        panic!(
            "creating {n} network namespace hosts failed; this test needs root, iproute2 \
             (`ip netns`) and iptables with the statistic match: {e}"
        )
    })
}

/// Asserts that nothing of `run` is left: namespaces, interfaces, root rule, owner record.
fn assert_gone(run: &str, n: usize) {
    let namespaces = sh(&["ip", "netns", "list"]);
    for host in 0..n {
        let ns = format!("acf{run}h{host}");
        assert!(
            !namespaces.split_whitespace().any(|word| word == ns),
            "{ns} is still listed:\n{namespaces}"
        );
    }
    let links = sh(&["ip", "-o", "link", "show"]);
    let prefix = format!(": acf{run}");
    assert!(
        !links.contains(&prefix),
        "interfaces of {run} left:\n{links}"
    );
    let forward = sh(&["iptables", "-w", "-S", "FORWARD"]);
    assert!(!forward.contains(&format!("acf{run}br")), "{forward}");
    let record = format!("/run/acf-hosts/{run}.pid");
    assert!(!std::path::Path::new(&record).exists(), "{record} left");
}

/// Runs a command that must succeed; its stdout.
fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A TCP echo server in the root namespace on the bridge's address; where it listens.
fn root_echo_server(addr: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((addr, 0)).expect("bind on the bridge address");
    let local = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    local
}

/// A probe from the root namespace, in the agents' vocabulary.
fn root_probe(addr: &str) -> String {
    let addr = addr.parse().expect("address");
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(mut stream) => ping(&mut stream),
        Err(e) => outcome(&e),
    }
}

/// An agent process in one host, driven line by line over its stdin and stdout.
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start(net: &Net, host: usize) -> Agent {
        let exe = std::env::current_exe().expect("test executable");
        let mut child = net
            .command(host, exe)
            .expect("host")
            .args([
                "agent_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(AGENT, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("agent stdout"));
        let mut agent = Agent {
            child,
            stdin,
            stdout,
        };
        assert_eq!(agent.reply(), "ready", "agent of host {host}");
        agent
    }

    /// The round trip of 4 bytes over the agent's connection; panics on anything else.
    fn rtt(&mut self) -> Duration {
        let reply = self.ask("rtt");
        reply
            .strip_prefix("rtt ")
            .and_then(|micros| micros.parse().ok())
            .map(Duration::from_micros)
            .unwrap_or_else(|| panic!("unexpected agent reply {reply:?}"))
    }

    /// The TCP ports listening in the agent's host, sorted.
    fn listening(&mut self) -> Vec<u16> {
        let reply = self.ask("listening");
        let ports = reply.strip_prefix("listening").map(|ports| {
            ports
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<Vec<u16>, _>>()
        });
        match ports {
            Some(Ok(ports)) => ports,
            _ => panic!("unexpected agent reply {reply:?}"),
        }
    }

    fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("agent stdin");
        writeln!(stdin, "{command}").expect("write to agent");
        stdin.flush().expect("write to agent");
        self.reply()
    }

    /// The next reply, skipping what the test harness inside the agent prints (which may
    /// precede a reply on its line: `test agent_entry_point ... agent: ready`).
    fn reply(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).expect("read from agent");
            assert!(read > 0, "the agent exited");
            if let Some((_, reply)) = line.trim_end().split_once("agent: ") {
                return reply.to_owned();
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // End of input ends the agent; the kill is for an agent stuck in a probe.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent: serves TCP and UDP echo on [`PORT`] and answers commands on stdin, one reply
/// line `agent: ...` each, until stdin closes.
///
/// - `connect ADDR` opens a TCP connection (replacing the previous one): `ok`, `timeout`.
/// - `echo` sends 4 bytes over it and waits for them to come back: `ok`, `timeout`, `reset`,
///   `closed`.
/// - `rtt` does the same with a longer timeout: `rtt MICROS` or what `echo` says.
/// - `udp ADDR N` sends N numbered datagrams and counts the distinct echoes: `received K`.
/// - `greet` sends [`GREETING`] over every connection its server accepted: `greeted N`.
/// - `listening` lists the TCP ports listening in the host: `listening PORT...`.
///
/// Anything else is `error ...`.
fn agent_main() -> ! {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).expect("bind tcp");
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).expect("bind udp");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    {
        let accepted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(clone) = stream.try_clone() {
                    accepted.lock().expect("accepted").push(clone);
                }
                std::thread::spawn(move || echo(stream));
            }
        });
    }
    std::thread::spawn(move || {
        let mut buf = [0; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    say("ready");
    let mut connection = None;
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words = line.split_whitespace().collect::<Vec<_>>();
        let reply = match words[..] {
            ["connect", addr] => match addr.parse() {
                Ok(addr) => match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
                    Ok(stream) => {
                        connection = Some(stream);
                        "ok".to_owned()
                    }
                    Err(e) => outcome(&e),
                },
                Err(e) => format!("error {addr}: {e}"),
            },
            ["echo"] => match connection.as_mut() {
                Some(stream) => ping(stream),
                None => "error no connection".to_owned(),
            },
            ["rtt"] => match connection.as_mut() {
                Some(stream) => round_trip(stream),
                None => "error no connection".to_owned(),
            },
            ["greet"] => {
                let mut greeted = 0;
                for stream in accepted.lock().expect("accepted").iter_mut() {
                    if stream.write_all(GREETING).is_ok() {
                        greeted += 1;
                    }
                }
                format!("greeted {greeted}")
            }
            ["listening"] => match listening() {
                Ok(ports) => ports.iter().fold("listening".to_owned(), |line, port| {
                    format!("{line} {port}")
                }),
                Err(e) => format!("error {e}"),
            },
            ["udp", addr, count] => match (addr.parse(), count.parse()) {
                (Ok(addr), Ok(count)) => match udp_burst(addr, count) {
                    Ok(received) => format!("received {received}"),
                    Err(e) => format!("error {e}"),
                },
                _ => format!("error bad udp command {line:?}"),
            },
            _ => format!("error unknown command {line:?}"),
        };
        say(&reply);
    }
    std::process::exit(0)
}

fn say(reply: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "agent: {reply}");
    let _ = stdout.flush();
}

fn echo(stream: TcpStream) {
    if let Ok(mut reader) = stream.try_clone() {
        let mut writer = stream;
        let _ = io::copy(&mut reader, &mut writer);
    }
}

/// Sends 4 bytes and waits for their echo: `ok`, `timeout` or `error ...`.
fn ping(stream: &mut TcpStream) -> String {
    let mut back = [0; 4];
    let result = stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.write_all(b"ping"))
        .and_then(|()| stream.read_exact(&mut back));
    match result {
        Ok(()) if &back == b"ping" => "ok".to_owned(),
        Ok(()) => format!("error echoed {back:?}"),
        Err(e) => outcome(&e),
    }
}

/// Like [`ping`], with [`RTT_TIMEOUT`]: `rtt MICROS` when the echo came back.
fn round_trip(stream: &mut TcpStream) -> String {
    let mut back = [0; 4];
    let start = Instant::now();
    let result = stream
        .set_read_timeout(Some(RTT_TIMEOUT))
        .and_then(|()| stream.write_all(b"ping"))
        .and_then(|()| stream.read_exact(&mut back));
    let rtt = start.elapsed();
    match result {
        Ok(()) if &back == b"ping" => format!("rtt {}", rtt.as_micros()),
        Ok(()) => format!("error echoed {back:?}"),
        Err(e) => outcome(&e),
    }
}

/// The ports in state LISTEN in `/proc/net/tcp`, which shows the reader's own namespace.
fn listening() -> io::Result<Vec<u16>> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let mut ports = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // "  0: 0100007F:1B58 00000000:0000 0A ...": local address, remote, state.
            let fields = line.split_whitespace().collect::<Vec<_>>();
            let (_, port) = fields.get(1)?.split_once(':')?;
            (fields.get(3) == Some(&"0A"))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect::<Vec<_>>();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn outcome(e: &io::Error) -> String {
    match e.kind() {
        // A read timeout surfaces as EAGAIN on Linux.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout".to_owned(),
        io::ErrorKind::ConnectionReset => "reset".to_owned(),
        io::ErrorKind::UnexpectedEof => "closed".to_owned(),
        _ => format!("error {e}"),
    }
}

/// Sends `count` numbered datagrams to `to` and counts the distinct numbers echoed back.
fn udp_burst(to: SocketAddr, count: u32) -> io::Result<usize> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_millis(300)))?;
    let receiver = socket.try_clone()?;
    let sent = Arc::new(AtomicBool::new(false));
    let counter = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut buf = [0; 8];
            loop {
                match receiver.recv(&mut buf) {
                    Ok(4) => {
                        seen.insert([buf[0], buf[1], buf[2], buf[3]]);
                    }
                    Ok(_) => {}
                    // Quiet for a read timeout after the last send: nothing more is coming.
                    Err(_) if sent.load(Ordering::Acquire) => return seen.len(),
                    Err(_) => {}
                }
            }
        })
    };
    for i in 0..count {
        socket.send(&i.to_be_bytes())?;
        // Paced so that neither side's socket buffer, nor the veth backlog, drops anything.
        std::thread::sleep(Duration::from_micros(500));
    }
    sent.store(true, Ordering::Release);
    counter
        .join()
        .map_err(|_| io::Error::other("counter thread panicked"))
}
