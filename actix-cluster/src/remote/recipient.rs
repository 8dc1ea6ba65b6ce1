//! [`RemoteRecipient`]: a type-erased address for one message type, on any node.

use std::fmt;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::actor::RemoteMessage;
use super::addr::{AddrWire, SendRequest, Target};
use super::error::{RemoteError, TrySendError};
use super::send::Endpoint;
use crate::codec::SerializationFormat;
use crate::node::NodeId;

/// A type-erased address that accepts one message type, on any node.
pub struct RemoteRecipient<M: RemoteMessage> {
    pub(super) ep: Arc<Endpoint>,
    pub(super) message: u32,
    pub(super) format: SerializationFormat,
    pub(super) local: OnceLock<Option<Recipient<M>>>,
}

impl<M: RemoteMessage> Clone for RemoteRecipient<M> {
    fn clone(&self) -> Self {
        Self {
            ep: Arc::clone(&self.ep),
            message: self.message,
            format: self.format,
            local: self.local.clone(),
        }
    }
}

impl<M: RemoteMessage> fmt::Debug for RemoteRecipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteRecipient({:?}#{:08x})", self.ep, self.message)
    }
}

impl<M: RemoteMessage> RemoteRecipient<M> {
    /// The node hosting the actor.
    pub fn node(&self) -> &NodeId {
        &self.ep.node
    }

    fn local(&self) -> Option<Recipient<M>> {
        let core = self.ep.core().ok()?;
        self.local
            .get_or_init(|| {
                if self.ep.is_local(core) {
                    core.actors.recipient_of::<M>(self.ep.actor, self.message)
                } else {
                    None
                }
            })
            .clone()
    }

    /// Like [`RemoteAddr::do_send`](crate::RemoteAddr::do_send).
    pub fn do_send(&self, msg: M) {
        if let Some(r) = self.local() {
            r.do_send(msg);
            return;
        }
        if let Err(e) = self.ep.try_tell(self.message, self.format, &msg) {
            let reason = if e.is_none() {
                "queue_full"
            } else {
                "send_failed"
            };
            if let Ok(core) = self.ep.core() {
                core.count_dropped(reason);
            }
            tracing::debug!(to = ?self.ep, reason, error = ?e, "do_send dropped a message");
        }
    }

    /// Like [`RemoteAddr::try_send`](crate::RemoteAddr::try_send).
    pub fn try_send(&self, msg: M) -> Result<(), TrySendError<M>> {
        if let Some(r) = self.local() {
            return r.try_send(msg).map_err(|e| match e {
                SendError::Full(m) => TrySendError::Full(m),
                SendError::Closed(m) => TrySendError::Failed(m, RemoteError::ActorStopped),
            });
        }
        match self.ep.try_tell(self.message, self.format, &msg) {
            Ok(()) => Ok(()),
            Err(None) => Err(TrySendError::Full(msg)),
            Err(Some(e)) => Err(TrySendError::Failed(msg, e)),
        }
    }

    /// Like [`RemoteAddr::send`](crate::RemoteAddr::send).
    pub fn send(&self, msg: M) -> SendRequest<M> {
        let target = match self.local() {
            Some(r) => Target::Local(r),
            None => Target::Remote {
                ep: Arc::clone(&self.ep),
                message: self.message,
                format: self.format,
            },
        };
        SendRequest {
            target,
            msg,
            timeout: None,
            default_timeout: self.ep.core().map(|c| c.request_timeout).ok(),
        }
    }
}

impl<M: RemoteMessage> Serialize for RemoteRecipient<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AddrWire {
            node: self.ep.node.name().to_owned(),
            incarnation: self.ep.node.incarnation(),
            addr: self.ep.node_addr,
            actor: self.ep.actor,
            message: Some((self.message, self.format)),
            name: None,
        }
        .serialize(s)
    }
}

impl<'de, M: RemoteMessage> Deserialize<'de> for RemoteRecipient<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = AddrWire::deserialize(d)?;
        let (message, format) = w.message.ok_or_else(|| {
            serde::de::Error::custom("an actor address is not a recipient address")
        })?;
        Ok(Self {
            ep: Arc::new(Endpoint::new(
                NodeId::new(w.node, w.incarnation),
                w.addr,
                w.actor,
                super::context::decoding_for(),
            )),
            message,
            format,
            local: OnceLock::new(),
        })
    }
}
