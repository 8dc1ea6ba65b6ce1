//! What the cluster is compared with, measured in the same run on the same machine.
//!
//! Each baseline is the lower bound of one cost the cluster adds: [`local_do_send`] is an actor
//! without a network, [`raw_tcp_stream`] a network without actors, serialization or TLS
//! ([`raw_tcp_stream_1k`] the same with 1 KiB payloads), and
//! [`raw_tcp_rtt`] the shortest round trip two threads can make over loopback TCP, and
//! [`RawRtt::start_relay`] the same round trip through the cluster's four-thread shape.

use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::BenchResult;
use crate::actors::{Processed, Sink, Tell8};
use crate::latency::{Percentiles, Recorder};

/// Size of one raw frame: a 4-byte little-endian length and an 8-byte payload, the same payload
/// size as the cluster's [`Tell8`].
const FRAME: usize = 4 + 8;
/// The length prefix of every raw frame.
const HEADER: usize = 4;
/// The raw writer's batch buffer, flushed with one `write` when full.
const BATCH: usize = 64 << 10;

/// Messages per second of actix `do_send` of a [`Tell8`] to a [`Sink`] on the sender's own
/// thread, ended by a `send(Processed)` whose reply is the number processed.
pub fn local_do_send(messages: u64) -> BenchResult<f64> {
    local_do_send_run(messages).map(|run| run.msgs_per_s)
}

/// The outcome of one [`local_do_send_run`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalRun {
    /// Messages the sink processed (the reply to `Processed`).
    pub processed: u64,
    /// `processed` per second, from the first `do_send` to the reply.
    pub msgs_per_s: f64,
    /// Process CPU time (user plus system, all threads) over the same window; `None` where it
    /// cannot be read (see [`crate::cpu`]).
    pub cpu: Option<Duration>,
}

/// [`local_do_send`] with the processed count and the process CPU time of the window.
pub fn local_do_send_run(messages: u64) -> BenchResult<LocalRun> {
    // A fresh thread gets a fresh actix System and leaves the caller's thread untouched.
    let worker = thread::Builder::new().name("bench-local".into()).spawn(
        move || -> BenchResult<LocalRun> {
            actix_rt::System::new().block_on(async move {
                let sink = Sink::default().start();
                let cpu_before = crate::cpu::process_cpu_time();
                let start = Instant::now();
                for i in 0..messages {
                    sink.do_send(Tell8(i.to_le_bytes()));
                }
                let processed = sink.send(Processed).await?;
                let elapsed = start.elapsed();
                let cpu = crate::cpu::since(cpu_before);
                Ok(LocalRun {
                    processed,
                    msgs_per_s: rate(processed, elapsed),
                    cpu,
                })
            })
        },
    )?;
    join(worker)
}

/// Messages per second through one loopback TCP connection: a writer thread batches frames into
/// a buffer and writes it whole; a reader thread decodes every frame. The clock stops when the
/// reader has decoded the last one. Frames carry an 8-byte payload, as [`Tell8`] does.
pub fn raw_tcp_stream(messages: u64) -> BenchResult<f64> {
    raw_stream::<8>(messages)
}

/// [`raw_tcp_stream`] with 1 KiB payloads, the size of the cluster's `Tell1k`: the baseline of
/// `tell_1k_plain`.
pub fn raw_tcp_stream_1k(messages: u64) -> BenchResult<f64> {
    raw_stream::<1024>(messages)
}

/// The raw framed stream with `PAYLOAD` bytes per frame: the first 8 bytes are the message's
/// sequence number, the rest a fixed filler copied into the batch. The reader decodes each
/// frame's length and adds the sequence number to a checksum; it does not copy the payload out
/// of its read buffer, so this is the floor of framing, syscalls and the kernel's copies, not of
/// any per-byte decoding. A const parameter, so that the 8-byte run has no filler code at all.
fn raw_stream<const PAYLOAD: usize>(messages: u64) -> BenchResult<f64> {
    const { assert!(PAYLOAD >= 8 && HEADER + PAYLOAD <= BATCH) };
    let length = u32::try_from(PAYLOAD)?.to_le_bytes();
    let frame = HEADER + PAYLOAD;
    let filler = [0xA5u8; PAYLOAD];
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = thread::Builder::new()
        .name("bench-raw-reader".into())
        .spawn(move || -> io::Result<Instant> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let mut buf = vec![0u8; BATCH];
            let (mut filled, mut decoded, mut checksum) = (0usize, 0u64, 0u64);
            while decoded < messages {
                let n = stream.read(&mut buf[filled..])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
                let mut pos = 0;
                while filled - pos >= HEADER {
                    let header = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
                    let len = u32::from_le_bytes(header) as usize;
                    if filled - pos - HEADER < len {
                        break;
                    }
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&buf[pos + HEADER..pos + HEADER + 8]);
                    checksum = checksum.wrapping_add(u64::from_le_bytes(word));
                    pos += HEADER + len;
                    decoded += 1;
                }
                buf.copy_within(pos..filled, 0);
                filled -= pos;
            }
            std::hint::black_box(checksum);
            Ok(Instant::now())
        })?;

    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..messages {
        batch.extend_from_slice(&length);
        batch.extend_from_slice(&i.to_le_bytes());
        batch.extend_from_slice(&filler[8..]);
        if batch.len() + frame > BATCH {
            stream.write_all(&batch)?;
            batch.clear();
        }
    }
    stream.write_all(&batch)?;
    let end = reader
        .join()
        .map_err(|_| "raw TCP reader thread panicked")??;
    Ok(rate(messages, end.duration_since(start)))
}

/// Round trips of one 12-byte frame over loopback TCP with tokio, one request in flight.
///
/// Two shapes:
/// - [`start`](Self::start), the raw round trip: an echo server on one thread, the client on
///   another, each a current-thread runtime (the shape of two nodes' network threads). Two
///   cross-thread wake-ups per round trip.
/// - [`start_relay`](Self::start_relay), the cluster's thread shape without the cluster: the
///   client hands each request to a "network" thread over a channel; that thread writes it; the
///   peer's network thread reads it and hands it to a "handler" thread, whose reply travels
///   back the same way. Six wake-ups per round trip, like `RemoteAddr::send` between nodes, so
///   the difference to the cluster's figure is what the library itself adds.
///
/// The threads stay up between [`round`](Self::round)s, so the harness can interleave raw
/// rounds with cluster rounds and both see the same machine state (see `docs/benchmarks.md` on
/// idle vCPUs).
#[derive(Debug)]
pub struct RawRtt {
    commands: tokio::sync::mpsc::UnboundedSender<u64>,
    done: std::sync::mpsc::Receiver<BenchResult<()>>,
    client: thread::JoinHandle<BenchResult<Recorder>>,
    helpers: Vec<thread::JoinHandle<io::Result<()>>>,
}

/// A request for the relay's handler thread: the value to echo and where to send it.
type Relayed = (u64, tokio::sync::oneshot::Sender<u64>);

impl RawRtt {
    /// The raw round trip: a client thread and an echo server thread.
    pub fn start() -> BenchResult<Self> {
        let (listener, addr) = bind_nonblocking()?;
        let server = spawn_io("bench-rtt-server", move || async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let (mut stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let mut frame = [0u8; FRAME];
            while read_frame(&mut stream, &mut frame).await? {
                stream.write_all(&frame).await?;
            }
            Ok(())
        })?;
        Self::with_client(vec![server], move |mut trips| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut frame = [0u8; FRAME];
            trips
                .run(async |seq| {
                    put_frame(&mut frame, seq);
                    stream.write_all(&frame).await?;
                    stream.read_exact(&mut frame).await.map(|_| ())
                })
                .await
        })
    }

    /// The cluster's thread shape over raw TCP: client, two network threads, a handler thread.
    pub fn start_relay() -> BenchResult<Self> {
        use std::cell::RefCell;
        use std::collections::HashMap;
        use std::rc::Rc;
        use tokio::sync::{mpsc, oneshot};

        let (listener, addr) = bind_nonblocking()?;
        let (to_handler, mut handler_inbox) = mpsc::unbounded_channel::<Relayed>();
        let handler = spawn_io("bench-relay-handler", move || async move {
            while let Some((value, reply)) = handler_inbox.recv().await {
                let _ = reply.send(value);
            }
            Ok(())
        })?;
        let server_net = spawn_io("bench-relay-net-b", move || async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (mut rd, mut wr) = tokio::io::split(stream);
            let (to_writer, mut writer_inbox) = mpsc::unbounded_channel::<u64>();
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async move {
                    tokio::task::spawn_local(async move {
                        let mut frame = [0u8; FRAME];
                        while let Some(value) = writer_inbox.recv().await {
                            put_frame(&mut frame, value);
                            if wr.write_all(&frame).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut frame = [0u8; FRAME];
                    while read_frame(&mut rd, &mut frame).await? {
                        let (reply, replied) = oneshot::channel();
                        if to_handler.send((frame_value(&frame), reply)).is_err() {
                            break;
                        }
                        let to_writer = to_writer.clone();
                        tokio::task::spawn_local(async move {
                            if let Ok(value) = replied.await {
                                let _ = to_writer.send(value);
                            }
                        });
                    }
                    Ok(())
                })
                .await
        })?;
        let (to_net, mut net_inbox) = mpsc::unbounded_channel::<Relayed>();
        let client_net = spawn_io("bench-relay-net-a", move || async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut rd, mut wr) = tokio::io::split(stream);
            let pending = Rc::new(RefCell::new(HashMap::<u64, oneshot::Sender<u64>>::new()));
            let completing = Rc::clone(&pending);
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async move {
                    tokio::task::spawn_local(async move {
                        let mut frame = [0u8; FRAME];
                        while let Ok(true) = read_frame(&mut rd, &mut frame).await {
                            let value = frame_value(&frame);
                            if let Some(reply) = completing.borrow_mut().remove(&value) {
                                let _ = reply.send(value);
                            }
                        }
                    });
                    let mut frame = [0u8; FRAME];
                    while let Some((value, reply)) = net_inbox.recv().await {
                        pending.borrow_mut().insert(value, reply);
                        put_frame(&mut frame, value);
                        wr.write_all(&frame).await?;
                    }
                    Ok(())
                })
                .await
        })?;
        Self::with_client(
            vec![handler, server_net, client_net],
            move |mut trips| async move {
                trips
                    .run(async |seq| {
                        let (reply, replied) = oneshot::channel();
                        to_net
                            .send((seq, reply))
                            .map_err(|_| io::Error::other("relay network thread stopped"))?;
                        let echoed = replied
                            .await
                            .map_err(|_| io::Error::other("relay dropped a request"))?;
                        if echoed == seq {
                            Ok(())
                        } else {
                            Err(io::Error::other("relay answered the wrong request"))
                        }
                    })
                    .await
            },
        )
    }

    fn with_client<F, Fut>(
        helpers: Vec<thread::JoinHandle<io::Result<()>>>,
        client: F,
    ) -> BenchResult<Self>
    where
        F: FnOnce(Trips) -> Fut + Send + 'static,
        Fut: Future<Output = BenchResult<Recorder>>,
    {
        let (commands, rounds) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let client = thread::Builder::new()
            .name("bench-rtt-client".into())
            .spawn(move || -> BenchResult<Recorder> {
                let trips = Trips {
                    rounds,
                    done: done_tx,
                    recorder: Recorder::new()?,
                };
                current_thread()?.block_on(client(trips))
            })?;
        Ok(Self {
            commands,
            done,
            client,
            helpers,
        })
    }

    /// Makes `requests` round trips that are not recorded.
    pub fn warm_up(&self, requests: u64) -> BenchResult<()> {
        self.commands
            .send(0)
            .map_err(|_| "RTT client thread stopped")?;
        self.round(requests)
    }

    /// Makes and records `requests` round trips, returning when they are done.
    pub fn round(&self, requests: u64) -> BenchResult<()> {
        if requests == 0 {
            return Ok(());
        }
        self.commands
            .send(requests)
            .map_err(|_| "RTT client thread stopped")?;
        self.done.recv().map_err(|_| "RTT client thread stopped")?
    }

    /// Closes the connection and returns the percentiles of every recorded round trip.
    pub fn finish(self) -> BenchResult<Percentiles> {
        drop(self.commands);
        let recorder = join(self.client)?;
        for helper in self.helpers {
            helper.join().map_err(|_| "RTT helper thread panicked")??;
        }
        Ok(recorder.percentiles())
    }
}

/// The client side of [`RawRtt`]: runs the rounds it is asked for and records them.
#[derive(Debug)]
struct Trips {
    rounds: tokio::sync::mpsc::UnboundedReceiver<u64>,
    done: std::sync::mpsc::Sender<BenchResult<()>>,
    recorder: Recorder,
}

impl Trips {
    /// Serves round commands until the harness hangs up; zero announces an unrecorded round.
    async fn run(
        &mut self,
        mut trip: impl AsyncFnMut(u64) -> io::Result<()>,
    ) -> BenchResult<Recorder> {
        let mut seq = 0u64;
        let mut record = true;
        while let Some(requests) = self.rounds.recv().await {
            if requests == 0 {
                record = false;
                continue;
            }
            let mut result = Ok(());
            for _ in 0..requests {
                seq += 1;
                let start = Instant::now();
                if let Err(e) = trip(seq).await {
                    result = Err(e);
                    break;
                }
                if record {
                    self.recorder.record(start.elapsed());
                }
            }
            record = true;
            let failed = result.is_err();
            let _ = self.done.send(result.map_err(Into::into));
            if failed {
                break;
            }
        }
        let empty = Recorder::new()?;
        Ok(std::mem::replace(&mut self.recorder, empty))
    }
}

/// [`RawRtt::start`] in one go: `warmup` unrecorded round trips, then `requests` recorded ones.
pub fn raw_tcp_rtt(warmup: u64, requests: u64) -> BenchResult<Percentiles> {
    let rtt = RawRtt::start()?;
    rtt.warm_up(warmup)?;
    rtt.round(requests)?;
    rtt.finish()
}

fn bind_nonblocking() -> io::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Runs `task` on a new thread with its own current-thread runtime.
fn spawn_io<F, Fut>(name: &str, task: F) -> io::Result<thread::JoinHandle<io::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>>,
{
    thread::Builder::new()
        .name(name.into())
        .spawn(move || current_thread()?.block_on(task()))
}

fn put_frame(frame: &mut [u8; FRAME], value: u64) {
    frame[..4].copy_from_slice(&8u32.to_le_bytes());
    frame[4..].copy_from_slice(&value.to_le_bytes());
}

fn frame_value(frame: &[u8; FRAME]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&frame[4..]);
    u64::from_le_bytes(word)
}

/// Reads one frame; `false` when the peer closed the connection between frames (the normal way
/// to finish).
async fn read_frame(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    frame: &mut [u8; FRAME],
) -> io::Result<bool> {
    match stream.read_exact(&mut frame[..4]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    stream.read_exact(&mut frame[4..]).await?;
    Ok(true)
}

fn current_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn join<T>(handle: thread::JoinHandle<BenchResult<T>>) -> BenchResult<T> {
    handle.join().map_err(|_| "benchmark thread panicked")?
}

/// Messages per second; zero for an empty or instantaneous run rather than infinity.
pub fn rate(messages: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        messages as f64 / secs
    } else {
        0.0
    }
}
