//! Delivery of frames from the network to local actors: one [`Dispatch`] per connection,
//! tells and requests in arrival order, replies and error replies back to the caller.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::future::LocalBoxFuture;
use tokio::sync::Semaphore;

use super::actor::Delivery;
use super::context::{RemoteContext, with_scope};
use super::error::{RemoteError, error_to_wire};
use super::local::{InFlight, LocalActor};
use super::system::SYSTEM_ACTOR;
use crate::codec::{self, SerializationFormat};
use crate::limits::Limits;
use crate::transport::{ConnectionDispatch, Inbound, Peer};
use crate::wire::{self, Frame, Payload};

/// Requests one connection may have in flight in local actors; more stall its reader.
/// Requests bypass mailbox capacity (actix queues a `send` past it), so this bounds them.
const MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION: usize = 1024;

/// The remote layer's entry in the transport: registered weakly, so that the transport (which
/// the context holds) does not keep the context alive in a cycle.
#[derive(Debug)]
pub(crate) struct Inbox(pub(crate) Weak<RemoteContext>);

impl Inbound for Inbox {
    fn connection(self: Arc<Self>) -> Box<dyn ConnectionDispatch> {
        match self.0.upgrade() {
            Some(ctx) => Box::new(Dispatch {
                ctx,
                cache: ActorCache::default(),
                in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION)),
            }),
            // The node stopped: nothing is delivered any more.
            None => Box::new(Stopped),
        }
    }
}

struct Stopped;

impl ConnectionDispatch for Stopped {
    fn dispatch(&mut self, _: &Arc<Peer>, _: Frame) -> Option<LocalBoxFuture<'static, ()>> {
        None
    }
}

/// Per-connection dispatch: a lookup cache in front of the shared actor table, so the hot
/// path takes no shared lock per message.
struct Dispatch {
    ctx: Arc<RemoteContext>,
    cache: ActorCache,
    in_flight: Arc<Semaphore>,
}

/// The per-connection cache, keyed by actor id. Ids enter it only after the actor table
/// found them (a peer cannot choose its keys), so it needs no flooding-resistant hash: one
/// multiplication instead of SipHash on every delivered message.
type ActorCache = HashMap<u64, Arc<dyn LocalActor>, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` id: spreads sequential ids over the high bits the table
/// probes with.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Dispatch {
    fn target(&mut self, node: &str, id: u64) -> Result<Arc<dyn LocalActor>, RemoteError> {
        if let Some(e) = self.cache.get(&id) {
            if e.alive() {
                return Ok(Arc::clone(e));
            }
            self.cache.remove(&id);
        }
        let e = self.ctx.actors.lookup(node, id)?;
        if self.cache.len() >= 4096 {
            self.cache.clear();
        }
        self.cache.insert(id, Arc::clone(&e));
        Ok(e)
    }

    fn tell(
        &mut self,
        peer: &Arc<Peer>,
        actor: u64,
        message: u32,
        payload: &Payload,
    ) -> Result<Delivery, RemoteError> {
        let bytes = self.ctx.actors.plain(payload)?;
        if actor == SYSTEM_ACTOR {
            return self
                .ctx
                .system
                .handle_tell(peer, message, &bytes)
                .map(|()| Delivery::Done);
        }
        let target = self.target(peer.id.name(), actor)?;
        // Addresses inside the message are bound to this node.
        with_scope(&self.ctx, || {
            target.tell(&peer.id, message, &bytes, payload.format)
        })
    }

    fn request(
        &mut self,
        peer: &Arc<Peer>,
        actor: u64,
        message: u32,
        correlation: u64,
        payload: Payload,
    ) -> Option<LocalBoxFuture<'static, ()>> {
        let started = if actor == SYSTEM_ACTOR {
            self.ctx
                .actors
                .plain(&payload)
                .and_then(|bytes| self.ctx.system.handle_request(peer, message, &bytes))
        } else {
            self.target(peer.id.name(), actor).and_then(|t| {
                let bytes = self.ctx.actors.plain(&payload)?;
                with_scope(&self.ctx, || {
                    t.request(&peer.id, message, &bytes, payload.format)
                })
            })
        };
        let reply = match started {
            Ok(f) => f,
            Err(e) => {
                report_unknown(&self.ctx, peer, &e);
                send_error(peer, correlation, &e);
                return None;
            }
        };
        let format = if actor == SYSTEM_ACTOR {
            SerializationFormat::Bincode
        } else {
            payload.format
        };
        let peer = Arc::clone(peer);
        let limits = self.ctx.limits;
        let busy = InFlight::enter(&self.ctx.actors);
        let respond = async move {
            let _busy = busy;
            match reply.await {
                Ok(bytes) => send_response(&peer, correlation, format, &bytes, &limits).await,
                Err(e) => send_error(&peer, correlation, &e),
            }
        };
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => {
                actix_rt::spawn(async move {
                    respond.await;
                    drop(permit);
                });
                None
            }
            Err(_) => {
                // Too many requests of this connection are in local actors: stop reading
                // until one completes.
                let sem = Arc::clone(&self.in_flight);
                Some(Box::pin(async move {
                    let permit = sem.acquire_owned().await;
                    actix_rt::spawn(async move {
                        respond.await;
                        drop(permit);
                    });
                }))
            }
        }
    }
}

/// Logs, once per (actor type, message), that `peer` sent a message a local actor type does
/// not declare. The sender knows the message's name: it is asked first
/// ([`id::MESSAGE_NAME`](super::system::id::MESSAGE_NAME)), so that the line names the message
/// and the line of code to add.
fn report_unknown(ctx: &Arc<RemoteContext>, peer: &Arc<Peer>, e: &RemoteError) {
    let Some((actor_type, id)) = ctx.actors.first_unknown(e) else {
        return;
    };
    let ctx = Arc::clone(ctx);
    let (node, addr) = (peer.id.clone(), peer.addr());
    actix_rt::spawn(async move {
        let req = super::system::MessageNameRequest {
            actor_type: actor_type.clone(),
            message: id,
        };
        let known: Option<(String, String)> = super::system::ask(
            &ctx,
            node.clone(),
            addr,
            super::system::id::MESSAGE_NAME,
            req,
            ctx.request_timeout,
        )
        .await
        .ok()
        .flatten();
        ctx.actors.warn_unknown(node.name(), &actor_type, id, known);
    });
}

fn send_error(peer: &Peer, correlation: u64, e: &RemoteError) {
    let (code, detail) = error_to_wire(e);
    peer.push_control(|b| wire::put_error(b, correlation, code, &detail));
}

async fn send_response(
    peer: &Peer,
    correlation: u64,
    format: SerializationFormat,
    bytes: &[u8],
    limits: &Limits,
) {
    let mut compressed_buf = Vec::new();
    let (body, compressed) = match limits.compression_threshold {
        Some(t) if bytes.len() >= t && codec::compress_into(bytes, &mut compressed_buf) => {
            (&compressed_buf[..], true)
        }
        _ => (bytes, false),
    };
    let len = wire::response_frame_len(body.len());
    let max_frame = peer.max_frame();
    if len - wire::LEN_PREFIX > max_frame as usize {
        // Too large for the caller to accept: it gets this error instead of a frame that
        // would close the connection and every request on it.
        send_error(
            peer,
            correlation,
            &RemoteError::ReplyTooLarge {
                size: bytes.len() as u64,
                limit: u64::from(max_frame),
            },
        );
        return;
    }
    let pushed = peer
        .push(len, |b| {
            wire::put_response(b, correlation, format, compressed, body)
        })
        .await;
    if let Err(e) = pushed {
        tracing::debug!(node = %peer.id, ?e, "reply not sent");
    }
}

impl ConnectionDispatch for Dispatch {
    fn dispatch(&mut self, peer: &Arc<Peer>, frame: Frame) -> Option<LocalBoxFuture<'static, ()>> {
        match frame {
            Frame::Tell {
                actor,
                message,
                payload,
            } => match self.tell(peer, actor, message, &payload) {
                Ok(Delivery::Done) => None,
                Ok(Delivery::Wait(wait)) => Some(wait),
                Err(e) => {
                    report_unknown(&self.ctx, peer, &e);
                    // A tell has nobody to report to: count it and say so in the log.
                    self.ctx
                        .actors
                        .undeliverable
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::message_undeliverable();
                    tracing::debug!(node = %peer.id, actor, error = %e, "tell not delivered");
                    None
                }
            },
            Frame::Request {
                actor,
                message,
                correlation,
                payload,
            } => self.request(peer, actor, message, correlation, payload),
            _ => None,
        }
    }
}
