//! The userspace relay behind [`Net::delay`](super::hosts::Net::delay): this kernel has no
//! `netem` qdisc, so delay cannot come from the kernel.
//!
//! A relay serves one link. It runs on a thread of its own that first enters the sending
//! host's network namespace (`setns`), so that its listener, its outbound connections and the
//! connection-tracking entry `SO_ORIGINAL_DST` reads all live in the namespace where the
//! `REDIRECT` rule rewrote the destination (conntrack is per namespace: a relay in the root
//! namespace could not recover the destination port). On that thread a current-thread tokio
//! runtime accepts the redirected connections on `127.0.0.1`, opens a connection to each one's
//! original destination and copies both directions, holding every chunk for the delay.
//!
//! Outbound connections carry a socket mark ([`Relay::start`]'s `mark`) that the host's rules
//! exempt, or the relay's own connections would be redirected back to itself.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

/// The most bytes one read takes, and so the largest chunk held.
const CHUNK: usize = 16 * 1024;

/// The most bytes held per direction of a connection. A full budget stops the relay reading,
/// and TCP's flow control then slows the sender, as a slow link would: at most `BUDGET` per
/// delay goes through (2.5 MiB/s at 400 ms), far above what the cluster sends.
const BUDGET: usize = 1024 * 1024;

// A chunk's permits are taken at once, as a u32: more than the budget would wait forever.
const _: () = assert!(CHUNK <= BUDGET && CHUNK <= u32::MAX as usize);

/// A running relay; dropping it stops it.
///
/// Stopping drops every relayed connection at once, with whatever it still held: both ends
/// see the connection closed, as after any break of the network, and reconnect.
#[derive(Debug)]
pub(super) struct Relay {
    port: u16,
    /// Microseconds, read at each chunk: a changed delay applies from the next chunk on.
    delay: Arc<AtomicU64>,
    /// Dropping it ends the runtime, and with it every connection and the listener.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay in the network namespace bound at `namespace` (`/run/netns/NAME`),
    /// listening on an ephemeral port of `127.0.0.1` there; its outbound connections carry
    /// `mark` (`SO_MARK`, which needs `CAP_NET_ADMIN`). Returns once it listens.
    pub(super) fn start(namespace: &Path, delay: Duration, mark: u32) -> io::Result<Relay> {
        let delay = Arc::new(AtomicU64::new(micros(delay)));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = {
            let (namespace, delay) = (namespace.to_owned(), Arc::clone(&delay));
            std::thread::Builder::new()
                .name("acf-delay-relay".to_owned())
                .spawn(move || run(namespace, delay, mark, ready_tx, stopped))?
        };
        let port = match ready_rx.recv() {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("the relay thread ended before listening"));
            }
        };
        Ok(Relay {
            port,
            delay,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port it listens on, on `127.0.0.1` of its namespace.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Holds chunks read from now on for `delay` instead.
    pub(super) fn set_delay(&self, delay: Duration) {
        self.delay.store(micros(delay), Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stop.take());
        // The runtime drops its tasks without waiting for their timers, so this returns as
        // soon as the thread sees the signal; afterwards the port is free.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn micros(delay: Duration) -> u64 {
    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)
}

/// The relay thread: enters the namespace, listens, reports the port, serves until stopped.
fn run(
    namespace: PathBuf,
    delay: Arc<AtomicU64>,
    mark: u32,
    ready: std::sync::mpsc::Sender<io::Result<u16>>,
    stopped: oneshot::Receiver<()>,
) {
    let setup = (|| {
        let ns = fs::File::open(&namespace)?;
        // Only this thread changes namespace; every socket it creates from now on is the
        // host's. The rest of the process stays in the root namespace.
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let port = listener.local_addr()?.port();
        io::Result::Ok((runtime, listener, port))
    })();
    let (runtime, listener) = match setup {
        Ok((runtime, listener, port)) => {
            let _ = ready.send(Ok(port));
            (runtime, listener)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        tokio::select! {
            _ = stopped => {}
            () = accept(listener, delay, mark) => {}
        }
    });
    // Dropping the runtime here drops every connection task, closing its sockets.
}

async fn accept(listener: TcpListener, delay: Arc<AtomicU64>, mark: u32) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&delay), mark));
            }
            // Out of descriptors, or a connection aborted before it was accepted: transient,
            // but not worth a busy loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Relays one redirected connection to where it was headed.
async fn connection(mut inbound: TcpStream, delay: Arc<AtomicU64>, mark: u32) {
    let mut outbound = match open(&inbound, mark).await {
        Ok(outbound) => outbound,
        Err(_) => {
            // The application believes it connected; a reset is the nearest thing to the
            // refusal or timeout it would have seen.
            abort(&inbound);
            return;
        }
    };
    let (mut in_read, mut in_write) = inbound.split();
    let (mut out_read, mut out_write) = outbound.split();
    let relayed = tokio::try_join!(
        pipe(&mut in_read, &mut out_write, &delay),
        pipe(&mut out_read, &mut in_write, &delay),
    );
    if relayed.is_err() {
        // One side broke: break the other too, rather than let it see an orderly end.
        abort(&inbound);
        abort(&outbound);
    }
}

/// Connects, with `mark`, to `inbound`'s original destination.
async fn open(inbound: &TcpStream, mark: u32) -> io::Result<TcpStream> {
    let target = SockRef::from(inbound)
        .original_dst_v4()?
        .as_socket_ipv4()
        .ok_or_else(|| io::Error::other("the original destination is not IPv4"))?;
    let socket = TcpSocket::new_v4()?;
    SockRef::from(&socket).set_mark(mark)?;
    let stream = socket.connect(SocketAddr::V4(target)).await?;
    // Chunks are already held for the delay; Nagle would hold small ones further.
    stream.set_nodelay(true)?;
    inbound.set_nodelay(true)?;
    Ok(stream)
}

/// Makes the coming close of `stream` a reset.
fn abort(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Copies `from` to `to` until `from` ends (then ends `to`'s direction too) or either fails.
/// Every chunk is written `delay` after it was read, in order; reading and writing run
/// concurrently, so the delay is not stretched by the writes.
async fn pipe<R, W>(from: &mut R, to: &mut W, delay: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let budget = Semaphore::new(BUDGET);
    // Unbounded in chunks but not in bytes: every chunk holds permits for its bytes until it
    // is written, so at most `BUDGET` bytes wait here (plus one empty end-of-stream marker).
    let (queue, mut due) = mpsc::unbounded_channel();
    let read = async {
        let mut buf = vec![0; CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            let at = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
            if n == 0 {
                let _ = queue.send((at, Vec::new(), None));
                return io::Result::Ok(());
            }
            // `n` is at most `CHUNK` (checked above to fit in u32 and in the budget).
            let permit = budget
                .acquire_many(u32::try_from(n).unwrap_or(u32::MAX))
                .await
                .map_err(io::Error::other)?;
            let _ = queue.send((at, buf[..n].to_vec(), Some(permit)));
        }
    };
    let write = async {
        while let Some((at, bytes, permit)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if bytes.is_empty() {
                return to.shutdown().await;
            }
            to.write_all(&bytes).await?;
            drop(permit);
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(|((), ())| ())
}
