//! Real, separate network hosts on one machine, and a nemesis that cuts and degrades the links
//! between them.
//!
//! A [`Net`] of `n` hosts is `n` network namespaces, each with its own loopback and one
//! interface `eth0` holding 10.a.b.(i+1)/24, all plugged into one bridge in the root
//! namespace. The bridge holds 10.a.b.254, so the harness's own clients, running in the test
//! process, reach every host directly:
//!
//! ```text
//!   namespace acf{run}h0      namespace acf{run}h1            namespace acf{run}h{n-1}
//!   lo, eth0 10.a.b.1         lo, eth0 10.a.b.2          ...  lo, eth0 10.a.b.n
//!   INPUT -> ACF (rules)      INPUT -> ACF (rules)            INPUT -> ACF (rules)
//!        |                         |                               |
//!    acf{run}v0                acf{run}v1                     acf{run}v{n-1}   (veth pairs)
//!        +-------------------------+------------ ... -------------+
//!                                bridge acf{run}br, 10.a.b.254       root namespace
//! ```
//!
//! Node processes are started inside a host with [`Net::command`]. The nemesis methods
//! ([`Net::cut`], [`Net::loss`], [`Net::partition`], [`Net::heal`]) put `DROP` rules into a
//! dedicated chain `ACF` of the *receiving* host's `iptables`, jumped to from its `INPUT`
//! chain. Dropping on input, rather than on the sender's output, is deliberate: an output drop
//! fails the sender's `connect` or `send` at once with `EPERM`, which no real network does,
//! while an input drop is a silent loss the sender can only notice by timing out, for new
//! and established connections alike. Only IPv4 is filtered, so ARP keeps working and a
//! healed link carries traffic again at once.
//!
//! The root namespace is never cut: it is the observer's vantage point, not a node.
//!
//! # Delay
//!
//! This kernel has no `netem` qdisc, so [`Net::delay`] delays in userspace, in a relay: a
//! thread of the test process that enters the *sending* host's namespace and listens on its
//! `127.0.0.1`. A `REDIRECT` rule in that host's `nat` table (chain `ACF`, jumped to from
//! `OUTPUT`) sends it every TCP connection the host opens to the delayed peer; the relay reads
//! the original destination (`SO_ORIGINAL_DST`), connects there from the host's own address
//! and copies both directions, holding every chunk of bytes for the delay. Its own outbound
//! connections carry a socket mark the rule exempts. Only TCP is delayed.
//!
//! NAT decides on a connection's first packet only, so the connections a host already has open
//! to the peer would escape the fault. A `REJECT --reject-with tcp-reset` rule in the sender's
//! `filter` chain `ACFOUT` (jumped to from `OUTPUT`) resets each of them on its next packet,
//! before it leaves: the application sees a broken connection and reconnects, now through the
//! relay. Resetting rather than waiting for old connections to end is deliberate: nodes keep
//! their connections for good, so most of them would never be delayed. `ACFOUT` is jumped to
//! only for connections the host opened (`-m conntrack --ctdir ORIGINAL`); that jump, made with
//! the host, also turns connection tracking on before any node runs, so that every connection
//! is tracked from its first packet and its opener is known.
//!
//! # What it changes outside its namespaces
//!
//! With `br_netfilter` loaded and `net.bridge.bridge-nf-call-iptables = 1` (Docker does both),
//! frames crossing the bridge traverse the root namespace's `iptables` `FORWARD` chain, whose
//! policy Docker sets to `DROP`: hosts could reach the root but not each other. Rather than
//! turn that sysctl off for the whole machine, [`Net::create`] inserts one rule at the head of
//! the root `FORWARD` chain accepting traffic that enters and leaves through its own bridge
//! (`-i acf{run}br -o acf{run}br -j ACCEPT`, the rule Docker uses for `docker0`), and removes
//! it again on drop.
//!
//! # Leftovers
//!
//! Every name starting with `acf` that looks like one of ours (namespace `acf{run}h{i}`,
//! interfaces `acf{run}br`, `acf{run}v{i}`, `acf{run}p{i}`, the root `FORWARD` rule) is
//! considered owned by the harness. Each run records its owner process (pid and start time,
//! so a recycled pid does not count) in `/run/acf-hosts/{run}.pid` before it creates
//! anything, and [`Net::create`] removes whatever belongs to a run whose owner is gone or
//! unrecorded. The rules of cuts, losses and delays live in the hosts' namespaces and go with
//! them, and delay relays are threads of the owner process, which end with it: nothing else
//! needs sweeping. A crashed or killed test therefore costs the next one a few `ip` invocations,
//! never a failure. Creation and sweeping hold the lock file `/run/acf-hosts/lock`, so
//! concurrent runs neither sweep each other nor pick the same subnet.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::relay::Relay;

/// Where runs record their owner and the lock that serializes creation lives.
const STATE_DIR: &str = "/run/acf-hosts";

/// Prefix of every name the harness owns.
const PREFIX: &str = "acf";

/// The chain, in each host's `filter` table, that holds the harness's drop rules (jumped to
/// from `INPUT`).
const CHAIN: &str = "ACF";

/// The chain, in each host's `nat` table, that holds the redirections to delay relays (jumped
/// to from `OUTPUT`).
const NAT_CHAIN: &str = "ACF";

/// The chain, in each host's `filter` table, that resets the connections a delay finds open
/// (jumped to from `OUTPUT`).
const OUT_CHAIN: &str = "ACFOUT";

/// The socket mark of a relay's outbound connections, which its host's rules let pass.
const RELAY_MARK: u32 = 0xacf0;

/// Where `ip netns` binds the namespaces, which a relay enters.
const NETNS_DIR: &str = "/run/netns";

/// The longest delay [`Net::delay`] accepts: far beyond any timeout of interest.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// The host side of each veth pair, renamed inside its namespace.
const HOST_IF: &str = "eth0";

/// Linux refuses longer interface names (`IFNAMSIZ` is 16 with the terminating NUL).
const MAX_IFNAME: usize = 15;

/// Hosts take .1 to .253; .254 is the root's, .255 the broadcast address.
const MAX_HOSTS: usize = 253;

/// Second octets of the candidate subnets: 10.100.0.0 to 10.227.255.0, 32768 /24s, away from
/// the low 10.x ranges that clouds and VPNs tend to use.
const FIRST_OCTET2: u32 = 100;
const SUBNETS: u32 = 128 * 256;

/// An error of [`Net`]. Whether anything changed is stated per variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The run token is empty or has characters other than ASCII letters and digits.
    /// Nothing was created.
    #[error("invalid run token {run:?}: use ASCII letters and digits only")]
    InvalidRun {
        /// The token given.
        run: String,
    },
    /// The network would have no host or more than 253. Nothing was created.
    #[error("a network has 1 to {MAX_HOSTS} hosts, not {n}")]
    InvalidSize {
        /// The number of hosts asked for.
        n: usize,
    },
    /// An interface name derived from the run token would exceed Linux's 15 bytes; a shorter
    /// token fixes it. Nothing was created.
    #[error(
        "interface name {name:?} would be longer than {MAX_IFNAME} bytes: shorten the run token"
    )]
    NameTooLong {
        /// The first name found too long.
        name: String,
    },
    /// A live process, maybe this one, already runs a network under this token. Nothing was
    /// created or removed.
    #[error("run {run:?} is in use by live process {pid}")]
    InUse {
        /// The token.
        run: String,
        /// Its owner.
        pid: u32,
    },
    /// Every candidate 10.x.y.0/24 overlaps a route of the machine. Leftovers of dead runs
    /// may have been removed; nothing was created.
    #[error("no free 10.x.y.0/24 subnet between 10.100.0.0 and 10.227.255.0")]
    NoFreeSubnet,
    /// A host index is not below [`Net::len`]. Nothing changed.
    #[error("no host {host} in a network of {len}")]
    NoSuchHost {
        /// The index given.
        host: usize,
        /// The number of hosts.
        len: usize,
    },
    /// A link from a host to itself was asked for; its traffic never leaves it. Nothing
    /// changed.
    #[error("host {host} has no link to itself")]
    SameHost {
        /// The host.
        host: usize,
    },
    /// A loss probability is not strictly between 0 and 1 (use [`Net::cut`] for 1 and
    /// [`Net::heal`] for 0). Nothing changed.
    #[error("loss probability {p} is not strictly between 0 and 1")]
    InvalidProbability {
        /// The probability given.
        p: f64,
    },
    /// A delay is zero (use [`Net::heal`]) or longer than 60 s. Nothing changed.
    #[error("delay {delay:?} is not between 0 and {MAX_DELAY:?}")]
    InvalidDelay {
        /// The delay given.
        delay: Duration,
    },
    /// The relay of [`Net::delay`] could not start: its thread, entering the host's
    /// namespace, or binding its port failed. Nothing changed.
    #[error("cannot start the delay relay: {source}")]
    Relay {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An external command could not be started (not installed, or not allowed). During
    /// [`Net::create`], whatever was created so far has been removed again; a nemesis method
    /// may have applied the rules preceding the failing one.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// An external command failed, typically for want of root or of kernel support. Same
    /// state as after [`HostError::Spawn`].
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// The owner record or the lock under `/run/acf-hosts` could not be written or read.
    /// Nothing was created.
    #[error("{}: {source}", path.display())]
    State {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A private network of `n` hosts: one namespace each, connected by a bridge in the root
/// namespace, which also gets an address (the harness's own clients talk from there).
///
/// Hosts are numbered `0..len()`. The nemesis methods take `&self` and may be called from
/// several threads; each keeps the rules and its own bookkeeping consistent, but a
/// [`Net::partition`] is applied rule by rule, not atomically.
///
/// Dropping the net stops its relays and removes its namespaces, veth pairs, bridge and root
/// `FORWARD` rule. Node processes still running inside a host are not killed (their owner
/// holds their `Child`), but they lose the network: stop them first.
#[derive(Debug)]
pub struct Net {
    run: String,
    n: usize,
    /// The first three octets: 10.a.b.
    subnet: [u8; 3],
    record: PathBuf,
    rules: Mutex<Rules>,
    /// What exists so far, so that dropping a half-built net removes exactly that.
    built: Built,
}

/// The rules in force, mirrored so that [`Net::cut`], [`Net::loss`] and [`Net::delay`] stay
/// idempotent and a changed loss rate or delay replaces the old one.
#[derive(Debug, Default)]
struct Rules {
    cuts: BTreeSet<(usize, usize)>,
    /// The probability exactly as passed to `iptables`, which `-D` needs to match the rule.
    losses: BTreeMap<(usize, usize), String>,
    /// The relay of each delayed link, whose rules are in the sender's chains; dropping one
    /// stops it.
    delays: BTreeMap<(usize, usize), Relay>,
}

#[derive(Debug, Default)]
struct Built {
    record: bool,
    bridge: bool,
    forward_rule: bool,
    namespaces: usize,
    veths: usize,
}

impl Net {
    /// Creates the network of `n` hosts.
    ///
    /// `run` is a short token of ASCII letters and digits (e.g. derived from the process id)
    /// that makes names unique: namespaces `acf{run}h{i}`, bridge `acf{run}br`, veth pairs
    /// `acf{run}v{i}` in the root namespace. Interface names must stay within 15 bytes, so a
    /// token of 8 characters fits any size. The subnet 10.a.b.0/24 is derived from `run` and,
    /// if it overlaps a route of the machine (another run's included), the next free one is
    /// taken; host `i` gets .(i+1), the root .254.
    ///
    /// Before creating, removes the leftovers of runs whose owner process is gone. Needs root,
    /// `ip` (iproute2) and `iptables` with the `nat` table and the `statistic`, `conntrack` and
    /// `mark` matches.
    pub fn create(run: &str, n: usize) -> Result<Net, HostError> {
        if run.is_empty() || !run.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(HostError::InvalidRun {
                run: run.to_owned(),
            });
        }
        if n == 0 || n > MAX_HOSTS {
            return Err(HostError::InvalidSize { n });
        }
        let longest = [
            bridge_name(run),
            veth_name(run, n - 1),
            peer_name(run, n - 1),
        ];
        if let Some(name) = longest.into_iter().find(|name| name.len() > MAX_IFNAME) {
            return Err(HostError::NameTooLong { name });
        }

        let dir = Path::new(STATE_DIR);
        fs::create_dir_all(dir).map_err(|source| state_error(dir, source))?;
        let lock_path = dir.join("lock");
        let lock =
            fs::File::create(&lock_path).map_err(|source| state_error(&lock_path, source))?;
        lock.lock()
            .map_err(|source| state_error(&lock_path, source))?;

        sweep(dir, run)?;
        let subnet = free_subnet(run)?;
        let mut net = Net {
            run: run.to_owned(),
            n,
            subnet,
            record: dir.join(format!("{run}.pid")),
            rules: Mutex::new(Rules::default()),
            built: Built::default(),
        };
        // On error `net` is dropped here, which removes what was built; the lock is released
        // after that (locals drop in reverse order), so no sweeper sees a half-built net.
        net.build()?;
        drop(lock);
        Ok(net)
    }

    /// Creates everything, recording progress in `self.built`.
    fn build(&mut self) -> Result<(), HostError> {
        // The record comes first: from here on a crash leaves an owner a later run can judge.
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or(0);
        write_record(&self.record, &format!("{pid} {start}\n"))?;
        self.built.record = true;

        let bridge = bridge_name(&self.run);
        run_ok(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]))?;
        self.built.bridge = true;
        run_ok(Command::new("iptables").args(forward_rule("-I", &bridge)))?;
        self.built.forward_rule = true;
        let root = format!("{}/24", self.root_addr());
        run_ok(Command::new("ip").args(["addr", "add", &root, "dev", &bridge]))?;
        run_ok(Command::new("ip").args(["link", "set", &bridge, "up"]))?;

        for host in 0..self.n {
            let ns = namespace_name(&self.run, host);
            let veth = veth_name(&self.run, host);
            let peer = peer_name(&self.run, host);
            let addr = format!("{}/24", self.host_addr(host));
            run_ok(Command::new("ip").args(["netns", "add", &ns]))?;
            self.built.namespaces = host + 1;
            run_ok(
                Command::new("ip")
                    .args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]),
            )?;
            self.built.veths = host + 1;
            run_ok(Command::new("ip").args(["link", "set", &peer, "netns", &ns]))?;
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", &peer, "name", HOST_IF]))?;
            run_ok(Command::new("ip").args(["-n", &ns, "addr", "add", &addr, "dev", HOST_IF]))?;
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", HOST_IF, "up"]))?;
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]))?;
            run_ok(Command::new("ip").args(["link", "set", &veth, "master", &bridge]))?;
            run_ok(Command::new("ip").args(["link", "set", &veth, "up"]))?;
            run_ok(&mut self.iptables(host, ["-N", CHAIN]))?;
            run_ok(&mut self.iptables(host, ["-A", "INPUT", "-j", CHAIN]))?;
            run_ok(&mut self.iptables(host, ["-N", OUT_CHAIN]))?;
            // The conntrack match is what turns connection tracking on in the namespace (a
            // `nat` table alone does not): from now on, not only once a delay starts, so that
            // the reset rules know who opened each connection. Otherwise a connection picked
            // up mid-stream counts as opened by whichever end spoke first after the delay
            // started, and its first packet from this host would be NATed like a new one.
            run_ok(&mut self.iptables(
                host,
                [
                    "-A",
                    "OUTPUT",
                    "-m",
                    "conntrack",
                    "--ctdir",
                    "ORIGINAL",
                    "-j",
                    OUT_CHAIN,
                ],
            ))?;
            run_ok(&mut self.iptables(host, ["-t", "nat", "-N", NAT_CHAIN]))?;
            run_ok(&mut self.iptables(host, ["-t", "nat", "-A", "OUTPUT", "-j", NAT_CHAIN]))?;
        }
        Ok(())
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the net has no host; never true, as [`Net::create`] refuses 0.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The address of `host`, 10.a.b.(host+1).
    pub fn addr(&self, host: usize) -> Result<Ipv4Addr, HostError> {
        self.check(host)?;
        Ok(self.host_addr(host))
    }

    /// The addresses of all hosts, in host order: a node's seed list, say.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        (0..self.n).map(|host| self.host_addr(host)).collect()
    }

    /// The root namespace's address on the bridge, 10.a.b.254: where the test process's own
    /// sockets appear to come from, and where hosts reach a server of the test process.
    pub fn root_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// The network namespace of `host`, `acf{run}h{host}`, for tools that take one
    /// (`ip -n`, `ip netns pids`).
    pub fn namespace(&self, host: usize) -> Result<String, HostError> {
        self.check(host)?;
        Ok(namespace_name(&self.run, host))
    }

    /// A `Command` that runs `program` inside `host`'s namespace (`ip netns exec NS program`).
    ///
    /// `ip netns exec` replaces itself with `program`, so the spawned child's id is the
    /// program's and `Child::kill` reaches it.
    pub fn command(&self, host: usize, program: impl AsRef<OsStr>) -> Result<Command, HostError> {
        self.check(host)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec"])
            .arg(namespace_name(&self.run, host))
            .arg(program);
        Ok(command)
    }

    /// Drops every packet from `from` to `to` (one direction; established TCP connections are
    /// affected too, and a TCP connection needs both directions, so neither side can open
    /// one). Idempotent; supersedes nothing, so a [`Net::loss`] on the same link stays.
    pub fn cut(&self, from: usize, to: usize) -> Result<(), HostError> {
        self.check_link(from, to)?;
        let mut rules = self.rules();
        if rules.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let source = format!("{}/32", self.host_addr(from));
        run_ok(&mut self.iptables(
            to,
            ["-I", CHAIN, "1", "-i", HOST_IF, "-s", &source, "-j", "DROP"],
        ))?;
        rules.cuts.insert((from, to));
        Ok(())
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: usize, b: usize) -> Result<(), HostError> {
        self.cut(a, b)?;
        self.cut(b, a)
    }

    /// Drops a random fraction `p` (0 < p < 1) of the packets from `from` to `to`, each packet
    /// independently. Replaces an earlier loss rate on the same link.
    pub fn loss(&self, from: usize, to: usize, p: f64) -> Result<(), HostError> {
        self.check_link(from, to)?;
        // `!(p > 0.0 && p < 1.0)` rather than `p <= 0.0 || p >= 1.0` so that NaN is refused.
        if !(p > 0.0 && p < 1.0) {
            return Err(HostError::InvalidProbability { p });
        }
        let p = format!("{p}");
        let mut rules = self.rules();
        if rules.losses.get(&(from, to)) == Some(&p) {
            return Ok(());
        }
        if let Some(old) = rules.losses.get(&(from, to)) {
            run_ok(&mut self.iptables(to, self.loss_rule("-D", from, old)))?;
            rules.losses.remove(&(from, to));
        }
        run_ok(&mut self.iptables(to, self.loss_rule("-A", from, &p)))?;
        rules.losses.insert((from, to), p);
        Ok(())
    }

    /// Delays the TCP connections that `from` opens to `to` by `delay` in each direction:
    /// every chunk of bytes, either way, is passed on `delay` after it was sent, so a round
    /// trip takes twice `delay` longer. Connections that `to` opens to `from` are left alone
    /// (delay `to` to `from` too for a slow link both ways), and so are UDP and ICMP.
    ///
    /// Connections `from` already has open to `to` are reset on their next packet, and new
    /// ones go through a relay (see the module docs). A connection through the relay is
    /// established at once, whether or not `to` accepts it: the relay connects onward only
    /// then, and resets it if that fails. The relay connects from `from`'s address, so cuts
    /// and losses of the link still apply.
    ///
    /// Calling it again on a delayed link changes the delay of the bytes sent from then on,
    /// and resets nothing. [`Net::heal`] ends it.
    pub fn delay(&self, from: usize, to: usize, delay: Duration) -> Result<(), HostError> {
        self.check_link(from, to)?;
        if delay.is_zero() || delay > MAX_DELAY {
            return Err(HostError::InvalidDelay { delay });
        }
        let mut rules = self.rules();
        if let Some(relay) = rules.delays.get(&(from, to)) {
            relay.set_delay(delay);
            return Ok(());
        }
        let namespace = Path::new(NETNS_DIR).join(namespace_name(&self.run, from));
        let relay = Relay::start(&namespace, delay, RELAY_MARK)
            .map_err(|source| HostError::Relay { source })?;
        let target = format!("{}/32", self.host_addr(to));
        let (port, mark) = (relay.port().to_string(), format!("{RELAY_MARK:#x}"));
        // On failure the relay is dropped, which stops it: nothing changed.
        run_ok(&mut self.iptables(
            from,
            [
                "-t",
                "nat",
                "-A",
                NAT_CHAIN,
                "-d",
                &target,
                "-p",
                "tcp",
                "-m",
                "mark",
                "!",
                "--mark",
                &mark,
                "-j",
                "REDIRECT",
                "--to-ports",
                &port,
            ],
        ))?;
        rules.delays.insert((from, to), relay);
        // Only packets of connections `from` opened reach this chain. Redirected ones have
        // 127.0.0.1 as destination by now (`nat` comes before `filter`), so `-d` spares them,
        // and the mark spares the relay's: what is left is a connection opened before the
        // redirection. Letting resets through lets `from` answer `to`'s next packet on a
        // connection already reset here, so that `to` learns of it too.
        run_ok(&mut self.iptables(
            from,
            [
                "-A",
                OUT_CHAIN,
                "-d",
                &target,
                "-p",
                "tcp",
                "!",
                "--tcp-flags",
                "RST",
                "RST",
                "-m",
                "mark",
                "!",
                "--mark",
                &mark,
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
        ))?;
        Ok(())
    }

    /// Removes every cut, loss and delay, in every host. A delay's relay stops, closing every
    /// connection that went through it, with whatever bytes it still held; the applications
    /// reconnect, directly.
    pub fn heal(&self) -> Result<(), HostError> {
        let mut rules = self.rules();
        for host in 0..self.n {
            run_ok(&mut self.iptables(host, ["-F", CHAIN]))?;
            // Per host, so that a failure further on leaves the mirror true to the rules.
            rules.cuts.retain(|&(_, to)| to != host);
            rules.losses.retain(|&(_, to), _| to != host);
            // Resets first: once redirection stops, new connections would be reset otherwise.
            run_ok(&mut self.iptables(host, ["-F", OUT_CHAIN]))?;
            run_ok(&mut self.iptables(host, ["-t", "nat", "-F", NAT_CHAIN]))?;
            // Only now, with nothing redirected to them any more, the relays stop.
            rules.delays.retain(|&(from, _), _| from != host);
        }
        Ok(())
    }

    /// Cuts every link between `side` and the other hosts, both directions. Links within each
    /// side are left alone; an empty side, or one holding every host, cuts nothing.
    pub fn partition(&self, side: &[usize]) -> Result<(), HostError> {
        for &host in side {
            self.check(host)?;
        }
        for &a in side {
            for b in (0..self.n).filter(|b| !side.contains(b)) {
                self.cut_both(a, b)?;
            }
        }
        Ok(())
    }

    fn check(&self, host: usize) -> Result<(), HostError> {
        if host < self.n {
            Ok(())
        } else {
            Err(HostError::NoSuchHost { host, len: self.n })
        }
    }

    fn check_link(&self, from: usize, to: usize) -> Result<(), HostError> {
        self.check(from)?;
        self.check(to)?;
        if from == to {
            return Err(HostError::SameHost { host: from });
        }
        Ok(())
    }

    fn host_addr(&self, host: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        // `create` caps `n` at 253, so every host's last octet fits.
        Ipv4Addr::new(a, b, c, u8::try_from(host + 1).unwrap_or(u8::MAX))
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        // Nothing panics while holding the lock, and the mirror is updated only after its
        // rule changed, so a poisoned lock still guards a true mirror.
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn loss_rule(&self, op: &str, from: usize, p: &str) -> Vec<String> {
        let source = format!("{}/32", self.host_addr(from));
        [
            op,
            CHAIN,
            "-i",
            HOST_IF,
            "-s",
            &source,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            p,
            "-j",
            "DROP",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `iptables` in `host`'s namespace, waiting for the xtables lock rather than failing.
    fn iptables<I, S>(&self, host: usize, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec"])
            .arg(namespace_name(&self.run, host))
            .args(["iptables", "-w"])
            .args(args);
        command
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Relays first, while their namespaces still exist; each joins its thread.
        self.rules
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .delays
            .clear();
        let mut failures = Vec::new();
        let mut attempt = |command: &mut Command| {
            if let Err(e) = run_ok(command) {
                failures.push(e);
            }
        };
        // Deleting a veth end deletes its peer even if a process still holds the namespace
        // alive, which `ip netns del` alone would not.
        for host in 0..self.built.veths {
            attempt(Command::new("ip").args(["link", "del", &veth_name(&self.run, host)]));
        }
        for host in 0..self.built.namespaces {
            attempt(Command::new("ip").args(["netns", "del", &namespace_name(&self.run, host)]));
        }
        let bridge = bridge_name(&self.run);
        if self.built.bridge {
            attempt(Command::new("ip").args(["link", "del", &bridge]));
        }
        if self.built.forward_rule {
            attempt(Command::new("iptables").args(forward_rule("-D", &bridge)));
        }
        // The record goes last: while anything of ours exists, it tells sweepers to keep off.
        if self.built.record
            && let Err(e) = fs::remove_file(&self.record)
        {
            failures.push(state_error(&self.record, e));
        }
        for e in failures {
            eprintln!("acf-hosts: cleaning up run {}: {e}", self.run);
        }
    }
}

fn namespace_name(run: &str, host: usize) -> String {
    format!("{PREFIX}{run}h{host}")
}

fn bridge_name(run: &str) -> String {
    format!("{PREFIX}{run}br")
}

fn veth_name(run: &str, host: usize) -> String {
    format!("{PREFIX}{run}v{host}")
}

/// The namespace end of a veth pair, named so only until it is moved and renamed `eth0`.
fn peer_name(run: &str, host: usize) -> String {
    format!("{PREFIX}{run}p{host}")
}

/// The root `FORWARD` rule letting bridged traffic between the hosts through; `op` is `-I`
/// (at the head) or `-D`.
fn forward_rule(op: &str, bridge: &str) -> [String; 9] {
    [
        "-w", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
    ]
    .map(str::to_owned)
}

/// The run owning a namespace or interface name: `acf{run}` followed by one of `suffixes`
/// and digits, or by `br` when `bridge` holds.
fn owner<'a>(name: &'a str, suffixes: &[char], bridge: bool) -> Option<&'a str> {
    let rest = name.strip_prefix(PREFIX)?;
    let run = match rest.strip_suffix("br") {
        Some(run) if bridge => run,
        _ => {
            let head = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            if head.len() == rest.len() {
                return None;
            }
            head.strip_suffix(suffixes)?
        }
    };
    (!run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(run)
}

fn namespace_owner(name: &str) -> Option<&str> {
    owner(name, &['h'], false)
}

fn link_owner(name: &str) -> Option<&str> {
    owner(name, &['v', 'p'], true)
}

/// Removes the leftovers of every run whose owner is gone, with the lock held. Fails only if
/// the machine cannot even be inspected (no `ip netns`, no `iptables`), or if `own` belongs
/// to a live process; removals themselves are best effort, since a leftover that resists
/// removal belongs to some other run and must not stop this one.
fn sweep(dir: &Path, own: &str) -> Result<(), HostError> {
    let mut live = BTreeSet::new();
    let mut dead_records = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| state_error(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| state_error(dir, source))?;
        let path = entry.path();
        let Some(run) = path
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|name| name.strip_suffix(".pid"))
        else {
            continue;
        };
        // An unreadable or garbled record is a crash mid-write: its owner is gone.
        let owner = fs::read_to_string(&path)
            .ok()
            .and_then(|text| live_owner(&text));
        match owner {
            Some(pid) if run == own => {
                return Err(HostError::InUse {
                    run: run.to_owned(),
                    pid,
                });
            }
            Some(_) => {
                live.insert(run.to_owned());
            }
            None => dead_records.push(path),
        }
    }
    let stale = |run: Option<&str>| run.is_some_and(|run| !live.contains(run));

    let mut failures = Vec::new();
    let mut attempt = |command: &mut Command| {
        if let Err(e) = run_ok(command) {
            failures.push(e);
        }
    };
    // Namespaces first: deleting one destroys its veth pairs, so the link list read after it
    // holds only what still needs deleting.
    let namespaces = run_ok(Command::new("ip").args(["netns", "list"]))?;
    for ns in namespaces
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if stale(namespace_owner(ns)) {
            attempt(Command::new("ip").args(["netns", "del", ns]));
        }
    }
    let links = run_ok(Command::new("ip").args(["-o", "link", "show"]))?;
    for line in links.lines() {
        // "7: acf1br: <BROADCAST,...", or "8: acf1v0@if2: <...".
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if stale(link_owner(name)) {
            attempt(Command::new("ip").args(["link", "del", name]));
        }
    }
    let forward = run_ok(Command::new("iptables").args(["-w", "-S", "FORWARD"]))?;
    for line in forward.lines() {
        let words = line.split_whitespace().collect::<Vec<_>>();
        if let ["-A", "FORWARD", "-i", bridge, "-o", out, "-j", "ACCEPT"] = words[..]
            && bridge == out
            && stale(link_owner(bridge).filter(|_| bridge.ends_with("br")))
        {
            attempt(Command::new("iptables").args(forward_rule("-D", bridge)));
        }
    }
    for e in failures {
        eprintln!("acf-hosts: removing leftovers of an earlier run: {e}");
    }
    for path in dead_records {
        let _ = fs::remove_file(path);
    }
    Ok(())
}

/// The pid in a record `"{pid} {start time}"` if that process still runs and is the same
/// process (its start time, in clock ticks since boot, tells a recycled pid apart).
fn live_owner(record: &str) -> Option<u32> {
    let mut words = record.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let start: u64 = words.next()?.parse().ok()?;
    (start_time(pid) == Some(start)).then_some(pid)
}

/// Field 22 of `/proc/{pid}/stat`: when the process started.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything, spaces and
    // parentheses included; the fields after its last ')' start at field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

fn write_record(path: &Path, text: &str) -> Result<(), HostError> {
    let mut file = fs::File::create(path).map_err(|source| state_error(path, source))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| state_error(path, source))
}

/// A /24 in 10.100.0.0 to 10.227.255.0 overlapping no route of the machine, searched from a
/// point derived from `run`. Called with the lock held, so a concurrent run has either
/// created its bridge (whose route excludes its subnet) or not yet chosen.
fn free_subnet(run: &str) -> Result<[u8; 3], HostError> {
    let routes = run_ok(Command::new("ip").args(["-4", "route", "show", "table", "all"]))?;
    let taken = routes
        .lines()
        .filter(|line| !line.starts_with("default"))
        .filter_map(|line| line.split_whitespace().find_map(parse_prefix))
        // A summary route as broad as 10.0.0.0/8 would exclude every candidate; a /24 on the
        // bridge only shadows a sliver of it, which the tests never need to reach.
        .filter(|&(_, len)| len > 8)
        .collect::<Vec<_>>();
    let start = fnv1a(run.as_bytes()) % SUBNETS;
    (0..SUBNETS)
        .map(|k| (start + k) % SUBNETS)
        .map(|i| (10u32 << 24) | ((FIRST_OCTET2 + i / 256) << 16) | ((i % 256) << 8))
        .find(|&net| !taken.iter().any(|&(r, len)| overlaps(net, 24, r, len)))
        .map(|net| {
            let [a, b, c, _] = net.to_be_bytes();
            [a, b, c]
        })
        .ok_or(HostError::NoFreeSubnet)
}

/// `a.b.c.d/len` or a bare address (a /32).
fn parse_prefix(word: &str) -> Option<(u32, u32)> {
    let (addr, len) = match word.split_once('/') {
        Some((addr, len)) => (addr, len.parse().ok().filter(|&len| len <= 32)?),
        None => (word, 32),
    };
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len))
}

fn overlaps(a: u32, a_len: u32, b: u32, b_len: u32) -> bool {
    let len = a_len.min(b_len);
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    a & mask == b & mask
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn state_error(path: &Path, source: io::Error) -> HostError {
    HostError::State {
        path: path.to_owned(),
        source,
    }
}

/// Runs `command` to completion; its stdout if it succeeded, else an error naming the command
/// line and quoting its stderr.
fn run_ok(command: &mut Command) -> Result<String, HostError> {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let output = command.output().map_err(|source| HostError::Spawn {
        command: line.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HostError::Command {
            command: line,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_net_can_be_shared_with_nemesis_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Net>();
        shareable::<HostError>();
    }

    #[test]
    fn names_parse_back_to_their_run() {
        assert_eq!(namespace_owner(&namespace_name("t12h3", 14)), Some("t12h3"));
        assert_eq!(link_owner(&bridge_name("t12")), Some("t12"));
        assert_eq!(link_owner(&veth_name("v9", 0)), Some("v9"));
        assert_eq!(link_owner(&peer_name("7", 252)), Some("7"));
        for foreign in [
            "eth0", "docker0", "acf", "acfbr", "acfv1", "acf1x2", "acf1v", "acf-1v2",
        ] {
            assert_eq!(link_owner(foreign), None, "{foreign}");
            assert_eq!(namespace_owner(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_route_inside_or_around_a_subnet_overlaps_it() {
        let net = u32::from(Ipv4Addr::new(10, 100, 5, 0));
        let at = |a, b, c, d| u32::from(Ipv4Addr::new(a, b, c, d));
        assert!(overlaps(net, 24, at(10, 100, 5, 254), 32));
        assert!(overlaps(net, 24, at(10, 100, 0, 0), 16));
        assert!(overlaps(net, 24, at(10, 100, 5, 128), 25));
        assert!(!overlaps(net, 24, at(10, 100, 6, 0), 24));
        assert!(overlaps(net, 24, 0, 0));
        assert_eq!(parse_prefix("172.17.0.0/16"), Some((at(172, 17, 0, 0), 16)));
        assert_eq!(parse_prefix("192.0.2.1"), Some((at(192, 0, 2, 1), 32)));
        assert_eq!(parse_prefix("dev"), None);
        assert_eq!(parse_prefix("1.2.3.4/33"), None);
    }

    #[test]
    fn invalid_arguments_are_refused_before_touching_the_machine() {
        assert!(matches!(
            Net::create("", 1),
            Err(HostError::InvalidRun { .. })
        ));
        assert!(matches!(
            Net::create("a-b", 1),
            Err(HostError::InvalidRun { .. })
        ));
        assert!(matches!(
            Net::create("a", 0),
            Err(HostError::InvalidSize { n: 0 })
        ));
        assert!(matches!(
            Net::create("a", 254),
            Err(HostError::InvalidSize { n: 254 })
        ));
        assert!(matches!(
            Net::create("abcdefghijk", 3),
            Err(HostError::NameTooLong { .. })
        ));
    }

    #[test]
    fn a_record_of_this_process_is_live_and_of_a_recycled_pid_is_not() {
        let pid = std::process::id();
        let start = start_time(pid).expect("own start time");
        assert_eq!(live_owner(&format!("{pid} {start}\n")), Some(pid));
        assert_eq!(live_owner(&format!("{pid} {}\n", start + 1)), None);
        assert_eq!(live_owner("garbage"), None);
        assert_eq!(live_owner(""), None);
    }
}
