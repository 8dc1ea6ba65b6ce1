//! The cluster scenarios: two in-process nodes, each on its own thread, a sender on node `a`
//! and a [`Sink`] on node `b`.

use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, RemoteMessage};
use actix_cluster_testkit::{TestCa, TestNode, plaintext, with_tls};

use crate::BenchResult;
use crate::actors::{Ping, Processed, Sink, Tell1k, Tell8};
use crate::baseline::rate;
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
        let (config_a, config_b): (ClusterConfigBuilder, ClusterConfigBuilder) = match security {
            Security::Plain => (plaintext("a"), plaintext("b")),
            Security::Tls => {
                let ca = TestCa::new(CLUSTER)?;
                (with_tls(&ca, "a")?, with_tls(&ca, "b")?)
            }
        };
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
                let start = Instant::now();
                for i in 0..messages {
                    sink.tell(make(i)).await?;
                }
                let after = processed(&sink).await?;
                let elapsed = start.elapsed();
                let processed = after - before;
                Ok::<_, RemoteError>(TellRun {
                    sent: messages,
                    processed,
                    elapsed,
                    msgs_per_s: rate(processed, elapsed),
                    bytes_written: s.stats().bytes_written - written_before,
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
}
