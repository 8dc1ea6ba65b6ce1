//! Remote actors: addresses of actors anywhere in the cluster, sending to them, and delivery
//! of what arrives from the network to local actix actors.
//!
//! Files by concern: [`actor`] (the trait and per-type message tables), [`local`] (this node's
//! actor table), [`moving`] (holding and forwarding a migrating actor's messages), [`dispatch`] (inbound frames to local mailboxes), [`send`] (the send path and
//! request/reply), [`addr`] and [`recipient`] (the public address types), [`named`] (addresses
//! that follow a cluster-wide name, through the [`NameResolver`] the registry implements),
//! [`watch`], [`system`] (requests to the node itself, actor 0, as a table other layers
//! register into) and [`context`] (what this layer needs of its node).

mod actor;
mod addr;
pub(crate) mod context;
pub(crate) mod dispatch;
mod error;
pub(crate) mod local;
pub(crate) mod moving;
pub(crate) mod named;
mod recipient;
pub(crate) mod send;
pub(crate) mod system;
pub(crate) mod watch;

pub use actor::{DistributedActor, Messages, RemoteMessage};
pub use addr::{RemoteAddr, SendFuture, SendRequest};
pub use error::{RemoteError, TrySendError};
pub use recipient::RemoteRecipient;
pub use watch::{
    MAX_WATCHES_PER_NODE, Terminated, TerminatedReason, WatchError, WatchId, WatchedActor,
};

pub(crate) use context::RemoteContext;
pub(crate) use local::{LocalActors, SpawnerFn, message_conflicts, spawner};
pub(crate) use named::{NameLocation, NameResolver};
