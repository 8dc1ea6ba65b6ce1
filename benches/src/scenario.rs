//! The cluster scenarios: two in-process nodes, each on its own thread, a sender on node `a`
//! and a [`Sink`] on node `b`.

use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, NetworkThread, RemoteMessage};
use actix_cluster_testkit::{TestCa, TestNode, plaintext, with_tls};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use crate::BenchResult;
use crate::actors::{Ping, Processed, Sink, Tell1k, Tell1kBytes, Tell8};
use crate::baseline::rate;
use crate::cpu;
use crate::latency::Recorder;

const CLUSTER: &str = "bench";
/// The local name of the sink on node `b`.
const SINK: &str = "sink";
/// How long the acknowledging request of a throughput run may take: the whole backlog of the
/// per-node queue and the mailbox is processed before it is answered.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the two nodes talk over mutual TLS or plaintext TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `insecure_plaintext()`.
    Plain,
    /// mTLS with certificates from a throwaway [`TestCa`].
    Tls,
}

/// Two connected nodes: `a` sends, `b` hosts the sink under the local name `"sink"`.
#[derive(Debug)]
pub struct Pair {
    a: TestNode,
    b: TestNode,
}

impl Pair {
    /// Starts `b`, then `a` seeded with `b`'s address, starts the sink on `b` and waits until
    /// `a` is connected.
    pub fn start(security: Security) -> BenchResult<Self> {
        Self::start_on(security, NetworkThread::Dedicated)
    }

    /// [`start`](Self::start) with both nodes' network I/O on the given thread: with
    /// [`NetworkThread::Home`] it shares the arbiter of the sender (on `a`) and of the sink
    /// (on `b`).
    pub fn start_on(security: Security, thread: NetworkThread) -> BenchResult<Self> {
        let (config_a, config_b): (ClusterConfigBuilder, ClusterConfigBuilder) = match security {
            Security::Plain => (plaintext("a"), plaintext("b")),
            Security::Tls => {
                let ca = TestCa::new(CLUSTER)?;
                (with_tls(&ca, "a")?, with_tls(&ca, "b")?)
            }
        };
        let (config_a, config_b) = (
            config_a.network_thread(thread),
            config_b.network_thread(thread),
        );
        let b = TestNode::start(CLUSTER, config_b.build()?, |s| s)?;
        b.run(|s| async move {
            let sink = s.start_actor(Sink::default());
            s.register_local_name(SINK, &sink)
        })??;
        let seed = b.system().local_addr().to_string();
        let a = TestNode::start(CLUSTER, config_a.seed_nodes([seed]).build()?, |s| s)?;
        let connected =
            a.run(|s| async move { s.wait_for_peers(1, Duration::from_secs(30)).await })?;
        if !connected {
            return Err("node a did not connect to node b within 30 s".into());
        }
        Ok(Self { a, b })
    }

    /// Stops both nodes gracefully.
    pub fn stop(self) {
        self.a.stop();
        self.b.stop();
    }

    /// One-way throughput of `make(i)` messages sent with `tell(..).await` (which waits for
    /// room in the per-node queue instead of dropping), ended by a `send(Processed)` whose reply
    /// is the number the sink processed.
    pub fn tell<M>(
        &self,
        warmup: u64,
        messages: u64,
        make: impl Fn(u64) -> M + Send + 'static,
    ) -> BenchResult<TellRun>
    where
        M: RemoteMessage,
        Sink: Handler<M>,
        <Sink as Actor>::Context: ToEnvelope<Sink, M>,
    {
        self.a
            .run(move |s| async move {
                let sink = s.actor_on::<Sink>("b", SINK).await?;
                for i in 0..warmup {
                    sink.tell(make(i)).await?;
                }
                let before = processed(&sink).await?;
                let written_before = s.stats().bytes_written;
                let cpu_before = cpu::process_cpu_time();
                let start = Instant::now();
                for i in 0..messages {
                    sink.tell(make(i)).await?;
                }
                let after = processed(&sink).await?;
                let elapsed = start.elapsed();
                let cpu = cpu::since(cpu_before);
                let processed = after - before;
                Ok::<_, RemoteError>(TellRun {
                    sent: messages,
                    processed,
                    elapsed,
                    msgs_per_s: rate(processed, elapsed),
                    bytes_written: s.stats().bytes_written - written_before,
                    cpu,
                })
            })?
            .map_err(Into::into)
    }

    /// [`tell`](Self::tell) with [`Tell8`] messages (8 distinct bytes each).
    pub fn tell_8b(&self, warmup: u64, messages: u64) -> BenchResult<TellRun> {
        self.tell(warmup, messages, |i| Tell8(i.to_le_bytes()))
    }

    /// [`tell`](Self::tell) with [`Tell1k`] messages; each is a fresh 1 KiB `Vec`, as a real
    /// sender's would be.
    pub fn tell_1k(&self, warmup: u64, messages: u64) -> BenchResult<TellRun> {
        let template = vec![0xA5u8; 1024];
        self.tell(warmup, messages, move |_| Tell1k(template.clone()))
    }

    /// [`tell`](Self::tell) with [`Tell1kBytes`] messages; each payload is a fresh 1 KiB
    /// buffer, like [`tell_1k`](Self::tell_1k)'s.
    pub fn tell_1k_bytes(&self, warmup: u64, messages: u64) -> BenchResult<TellRun> {
        let template = vec![0xA5u8; 1024];
        self.tell(warmup, messages, move |_| {
            Tell1kBytes(bytes::Bytes::from(template.clone()))
        })
    }

    /// Round trips of `send(Ping).await`, one request in flight, added to `recorder` (which
    /// is handed back); the first `warmup` requests are not recorded. Call it several times to
    /// interleave rounds with other measurements.
    pub fn ask(&self, recorder: Recorder, warmup: u64, requests: u64) -> BenchResult<Recorder> {
        self.a.run(move |s| async move {
            let mut recorder = recorder;
            let sink = s.actor_on::<Sink>("b", SINK).await?;
            for i in 0..warmup + requests {
                let start = Instant::now();
                let echoed = sink.send(Ping(i)).await?;
                let took = start.elapsed();
                if echoed != i {
                    return Err(format!("ping {i} answered with {echoed}").into());
                }
                if i >= warmup {
                    recorder.record(took);
                }
            }
            Ok::<_, crate::BenchError>(recorder)
        })?
    }

    /// Request throughput with `in_flight` requests outstanding: `send(Ping(i))` from one task
    /// on node `a`'s arbiter, a new request started as soon as any reply arrives, until
    /// `requests` were started and every one has ended. `warmup` requests go first in the same
    /// shape, unmeasured. Only replies that arrived and echo their request count; a failed
    /// request (its error, or a wrong echo) is counted in `failed` and the run goes on, unless
    /// more than `in_flight` failed, which stops starting new ones (the connection is
    /// evidently broken, and every further request would wait out its timeout).
    pub fn ask_pipelined(
        &self,
        in_flight: usize,
        warmup: u64,
        requests: u64,
    ) -> BenchResult<PipelinedRun> {
        if in_flight == 0 {
            return Err("a pipelined ask needs at least one request in flight".into());
        }
        self.a.run(move |s| async move {
            let sink = s.actor_on::<Sink>("b", SINK).await?;
            let warm = pipeline(&sink, in_flight, 0, warmup).await;
            if let Some(e) = warm.first_error {
                return Err(format!("pipelined warm-up: {e}").into());
            }
            let cpu_before = cpu::process_cpu_time();
            let start = Instant::now();
            let run = pipeline(&sink, in_flight, warmup, requests).await;
            let elapsed = start.elapsed();
            let cpu = cpu::since(cpu_before);
            Ok::<_, crate::BenchError>(PipelinedRun {
                in_flight,
                sent: run.sent,
                completed: run.completed,
                failed: run.failed,
                first_error: run.first_error,
                elapsed,
                requests_per_s: rate(run.completed, elapsed),
                cpu,
            })
        })?
    }
}

/// What one [`pipeline`] did.
struct Pipelined {
    sent: u64,
    completed: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Sends `Ping(first)` … `Ping(first + requests - 1)` keeping up to `in_flight` outstanding,
/// and counts the answers; see [`Pair::ask_pipelined`].
async fn pipeline(
    sink: &RemoteAddr<Sink>,
    in_flight: usize,
    first: u64,
    requests: u64,
) -> Pipelined {
    let end = first + requests;
    let mut next = first;
    let mut pending = FuturesUnordered::new();
    let mut out = Pipelined {
        sent: 0,
        completed: 0,
        failed: 0,
        first_error: None,
    };
    loop {
        let broken = out.failed > in_flight as u64;
        while !broken && pending.len() < in_flight && next < end {
            let i = next;
            next += 1;
            out.sent += 1;
            let request = sink.send(Ping(i));
            pending.push(async move { (i, request.await) });
        }
        let Some((i, reply)) = pending.next().await else {
            break;
        };
        let error = match reply {
            Ok(echoed) if echoed == i => {
                out.completed += 1;
                continue;
            }
            Ok(echoed) => format!("ping {i} answered with {echoed}"),
            Err(e) => format!("ping {i}: {e}"),
        };
        out.failed += 1;
        out.first_error.get_or_insert(error);
    }
    if out.failed > 0 {
        let first = out.first_error.take().unwrap_or_default();
        let stopped = if out.sent < requests {
            format!(", so only {} of {requests} were started", out.sent)
        } else {
            String::new()
        };
        out.first_error = Some(format!(
            "{} of {} requests failed{stopped}; the first: {first}",
            out.failed, out.sent
        ));
    }
    out
}

/// The sink's processed count; the acknowledgement that ends a throughput run.
///
/// A free function, not inline in [`Pair::tell`]: there the `Sink: Handler<M>` bound would make
/// the compiler take every `send` as a send of `M`.
async fn processed(sink: &RemoteAddr<Sink>) -> Result<u64, RemoteError> {
    sink.send(Processed).timeout(ACK_TIMEOUT).await
}

/// The outcome of one throughput run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TellRun {
    /// Messages the sender handed to `tell`.
    pub sent: u64,
    /// Messages the sink processed during the run (what the rate counts).
    pub processed: u64,
    /// From the first `tell` to the acknowledgement.
    pub elapsed: Duration,
    /// `processed / elapsed`.
    pub msgs_per_s: f64,
    /// Bytes node `a` wrote to the network during the run, frame headers (and TLS records)
    /// included.
    pub bytes_written: u64,
    /// Process CPU time (user plus system, every thread of the process) over the same window as
    /// `elapsed`; `None` where it cannot be read (see [`crate::cpu`]).
    pub cpu: Option<Duration>,
}

/// The outcome of one [`Pair::ask_pipelined`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelinedRun {
    /// Requests kept outstanding.
    pub in_flight: usize,
    /// Requests started in the measured window.
    pub sent: u64,
    /// Requests whose reply arrived and echoed the request (what the rate counts).
    pub completed: u64,
    /// Requests that failed or were answered wrongly.
    pub failed: u64,
    /// How many failed and the first failure; `None` when none did.
    pub first_error: Option<String>,
    /// From the first request to the last reply (or failure).
    pub elapsed: Duration,
    /// `completed / elapsed`.
    pub requests_per_s: f64,
    /// Process CPU time (user plus system, all threads) over the same window.
    pub cpu: Option<Duration>,
}
