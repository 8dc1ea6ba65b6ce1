//! The actor side of the remote layer: [`DistributedActor`], the messages a type accepts
//! from the network ([`Messages`]), and the per-type table that decodes and delivers them.
//!
//! A message type is identified on the wire by a 32-bit hash of the stable name the actor's
//! [`DistributedActor::messages`] gives it (never `std::any::type_name`, which changes between
//! builds). Names only need to be unique per actor type; a clash is reported when the type is
//! registered.

use std::any::{Any, TypeId};

use actix::dev::{MessageResponse, ToEnvelope};
use actix::prelude::*;
use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::RemoteError;
use crate::codec::{self, SerializationFormat};
use crate::placement::{Constraint, Placement};

/// An actix actor that can be addressed from other nodes.
///
/// Existing actors keep `type Context = Context<Self>` and their `Handler` impls; this trait
/// adds a stable type name and the list of messages that may arrive over the network, one
/// line per message:
///
/// ```
/// use actix::prelude::*;
/// use actix_cluster::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { n: u64 }
/// impl Actor for Counter { type Context = Context<Self>; }
///
/// #[derive(Message, Serialize, Deserialize)]
/// #[rtype(result = "u64")]
/// struct Add(u64);
/// impl Handler<Add> for Counter {
///     type Result = u64;
///     fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 { self.n += m.0; self.n }
/// }
///
/// impl DistributedActor for Counter {
///     const NAME: &'static str = "example.counter";
///     fn messages(m: &mut Messages<Self>) {
///         m.handle::<Add>("add");
///     }
/// }
/// ```
pub trait DistributedActor: Actor<Context = Context<Self>> {
    /// Stable, cluster-wide name of this actor type, used to check addresses and to spawn it
    /// on other nodes. Changing it is a wire-protocol change for this type.
    const NAME: &'static str;

    /// Declares the messages other nodes may send, each under a stable name.
    fn messages(messages: &mut Messages<Self>);

    /// Format for messages to this actor type; `None` uses the node's configured default.
    fn serialization_format() -> Option<SerializationFormat> {
        None
    }

    /// Where [`ClusterSystem::spawn`](crate::ClusterSystem::spawn) puts actors of this type
    /// when the spawn does not say ([`SpawnSpec::placement`](crate::placement::SpawnSpec::placement)):
    /// by default on the spawning node.
    fn placement() -> Placement {
        Placement::Local
    }

    /// Which members may host actors of this type when the spawn does not say
    /// ([`SpawnSpec::constraint`](crate::placement::SpawnSpec::constraint)): by default every
    /// member that is Up and not a client. Placement on another node also requires that node
    /// to have registered the type.
    fn placement_constraint() -> Constraint {
        Constraint::new()
    }

    /// Whether supervised actors of this type placed by
    /// [`Placement::ConsistentHash`] move to their new owner when the ring changes (a node
    /// joins): the registry leader [migrates](crate::ClusterSystem::migrate) them, a few at a
    /// time. Requires [`Messages::migratable`]. Off by default.
    fn rebalance() -> bool {
        false
    }
}

/// A message that can cross the network: serde both ways for it and its reply.
///
/// Implemented automatically; it only names the bounds.
pub trait RemoteMessage:
    Message<Result: Serialize + DeserializeOwned + Send + 'static>
    + Serialize
    + DeserializeOwned
    + Send
    + 'static
{
}

impl<M> RemoteMessage for M where
    M: Message<Result: Serialize + DeserializeOwned + Send + 'static>
        + Serialize
        + DeserializeOwned
        + Send
        + 'static
{
}

/// What delivering a tell needs from the connection.
pub(crate) enum Delivery {
    /// Delivered (queued in the actor's mailbox).
    Done,
    /// The mailbox was full: the message is queued but the connection must wait for it.
    Wait(LocalBoxFuture<'static, ()>),
}

type TellFn<A> = fn(&Addr<A>, &[u8], SerializationFormat) -> Result<Delivery, RemoteError>;
pub(crate) type ReplyFuture = LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>>;
type RequestFn<A> = fn(&Addr<A>, &[u8], SerializationFormat) -> Result<ReplyFuture, RemoteError>;

pub(crate) struct MessageEntry<A: Actor> {
    name: &'static str,
    /// `std::any::type_name` of the message, for errors that tell the user what to declare.
    rust_type: &'static str,
    id: u32,
    type_id: TypeId,
    pub(crate) tell: TellFn<A>,
    pub(crate) request: RequestFn<A>,
    pub(crate) recipient: fn(&Addr<A>) -> Box<dyn Any + Send>,
}

/// Serializes a running actor for a migration.
pub(crate) type SnapshotFn<A> = fn(&A, SerializationFormat) -> Result<Vec<u8>, codec::CodecError>;

/// The messages an actor type accepts from the network. See [`DistributedActor::messages`].
pub struct Messages<A: Actor> {
    entries: Vec<MessageEntry<A>>,
    conflicts: Vec<String>,
    snapshot: Option<SnapshotFn<A>>,
}

impl<A: Actor> std::fmt::Debug for Messages<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

impl<A: DistributedActor> Messages<A> {
    /// Accepts message `M` under the stable wire name `name`.
    pub fn handle<M>(&mut self, name: &'static str) -> &mut Self
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
        <A as Handler<M>>::Result: MessageResponse<A, M>,
    {
        let id = message_id(name);
        let type_id = TypeId::of::<M>();
        if let Some(other) = self
            .entries
            .iter()
            .find(|e| e.id == id || e.type_id == type_id)
        {
            self.conflicts.push(format!(
                "{}: message {name:?} clashes with {:?} (same name hash or same Rust type)",
                A::NAME,
                other.name
            ));
            return self;
        }
        self.entries.push(MessageEntry {
            name,
            rust_type: std::any::type_name::<M>(),
            id,
            type_id,
            tell: tell_fn::<A, M>,
            request: request_fn::<A, M>,
            recipient: |addr| Box::new(addr.clone().recipient::<M>()),
        });
        self
    }

    /// Lets running actors of this type move to another node
    /// ([`ClusterSystem::migrate`](crate::ClusterSystem::migrate)): between two messages the
    /// actor is serialized as it is (its `Serialize` impl is its state), started on the target
    /// from that state (through the target's spawner, so the target must have
    /// [registered](crate::ClusterSystemBuilder::register) the type), and stopped here.
    /// Without this line a migration is refused with
    /// [`MigrateError::NotMigratable`](crate::MigrateError::NotMigratable).
    pub fn migratable(&mut self) -> &mut Self
    where
        A: Serialize,
    {
        self.snapshot = Some(|actor, format| codec::encode(format, actor));
        self
    }
}

/// FNV-1a over the name: stable across builds and platforms.
pub(crate) fn message_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn tell_fn<A, M>(
    addr: &Addr<A>,
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<Delivery, RemoteError>
where
    A: DistributedActor + Handler<M>,
    M: RemoteMessage,
    A::Context: ToEnvelope<A, M>,
{
    let msg: M = codec::decode(format, bytes).map_err(|e| RemoteError::from_codec(e, true))?;
    match addr.try_send(msg) {
        Ok(()) => Ok(Delivery::Done),
        Err(SendError::Full(msg)) => {
            // `send` queues past the capacity and resolves once the message is handled;
            // awaiting it (never dropping it, which would cancel the message) is what stalls
            // the connection until the actor catches up.
            let handled = addr.send(msg);
            Ok(Delivery::Wait(Box::pin(async move {
                let _ = handled.await;
            })))
        }
        Err(SendError::Closed(_)) => Err(RemoteError::ActorStopped),
    }
}

fn request_fn<A, M>(
    addr: &Addr<A>,
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<ReplyFuture, RemoteError>
where
    A: DistributedActor + Handler<M>,
    M: RemoteMessage,
    A::Context: ToEnvelope<A, M>,
{
    let msg: M = codec::decode(format, bytes).map_err(|e| RemoteError::from_codec(e, true))?;
    if !addr.connected() {
        return Err(RemoteError::ActorStopped);
    }
    let reply = addr.send(msg);
    Ok(Box::pin(async move {
        match reply.await {
            Ok(result) => {
                codec::encode(format, &result).map_err(|e| RemoteError::from_reply_codec(e, false))
            }
            Err(MailboxError::Closed) => Err(RemoteError::HandlerFailed(
                "the actor stopped or panicked while handling the request".into(),
            )),
            Err(MailboxError::Timeout) => {
                Err(RemoteError::HandlerFailed("timed out in the actor".into()))
            }
        }
    }))
}

/// The message table of one actor type, built once per node.
pub(crate) struct ActorType<A: Actor> {
    entries: Vec<MessageEntry<A>>,
    /// How a running actor is serialized to migrate; `None` if the type did not opt in.
    pub(crate) snapshot: Option<SnapshotFn<A>>,
    /// Message ids with their entry, sorted by id: a type has a handful of messages, for which
    /// a binary search beats hashing the id on every delivery.
    by_id: Vec<(u32, usize)>,
}

impl<A: DistributedActor> ActorType<A> {
    pub(crate) fn build() -> (Self, Vec<String>) {
        let mut messages = Messages {
            entries: Vec::new(),
            conflicts: Vec::new(),
            snapshot: None,
        };
        A::messages(&mut messages);
        let mut by_id: Vec<(u32, usize)> = messages
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
        by_id.sort_unstable();
        (
            Self {
                entries: messages.entries,
                snapshot: messages.snapshot,
                by_id,
            },
            messages.conflicts,
        )
    }

    pub(crate) fn entry(&self, id: u32) -> Option<&MessageEntry<A>> {
        let at = self.by_id.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        Some(&self.entries[self.by_id[at].1])
    }

    /// Wire id, wire name and Rust type name of every declared message.
    pub(crate) fn names(&self) -> impl Iterator<Item = (u32, &'static str, &'static str)> + '_ {
        self.entries.iter().map(|e| (e.id, e.name, e.rust_type))
    }

    /// The wire id of message type `M`, if `A` declared it.
    pub(crate) fn message_id_of<M: 'static>(&self) -> Option<u32> {
        let t = TypeId::of::<M>();
        self.entries.iter().find(|e| e.type_id == t).map(|e| e.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_fnv1a() {
        // Reference values of 32-bit FNV-1a; a change here breaks the wire protocol.
        assert_eq!(message_id(""), 0x811c_9dc5);
        assert_eq!(message_id("a"), 0xe40c_292c);
        assert_eq!(message_id("foobar"), 0xbf9c_f968);
    }
}
