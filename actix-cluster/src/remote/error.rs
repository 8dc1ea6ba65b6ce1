//! The errors of remote calls, and how they travel in `Error` frames.
//!
//! One enum per operation: [`RemoteError`] for anything sent to an actor, [`TrySendError`] for
//! the non-waiting send that hands the message back.

use std::fmt;
use std::time::Duration;

use crate::codec::CodecError;
use crate::node::NodeId;

/// Why a remote call failed.
///
/// Every variant says whether the handler may have run; [`is_not_delivered`] sums it up.
/// Errors about the request (`Encode`, `Decode`, `PayloadTooLarge`) are kept apart from errors
/// about its reply (`ReplyEncode`, `ReplyDecode`, `ReplyTooLarge`): after a reply-side error
/// the handler **has run**, so retrying would run it again.
///
/// [`is_not_delivered`]: RemoteError::is_not_delivered
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No reply within the deadline. The request may still be handled later; its late reply
    /// is discarded.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The node could not be reached: membership declared it down, or it has had no
    /// connection for `Timeouts::give_up_after`. Nothing was delivered: the send failed at
    /// once, or the request waited in the send queue and was dropped there unwritten.
    #[error("node {node} is unreachable")]
    NodeUnreachable {
        /// Node name as addressed.
        node: String,
    },
    /// The request had been written when the connection to the node dropped, or the node was
    /// declared down, restarted as a new incarnation, left or shut down; or the address
    /// points at an incarnation that is gone. It may or may not have been handled.
    #[error("node {node} is gone")]
    NodeGone {
        /// The node that was addressed.
        node: NodeId,
    },
    /// No node of that name is known to this node.
    #[error("no node named {0:?} is known")]
    UnknownNode(String),
    /// The addressed node does not host that actor (never existed, or it stopped and its id
    /// is not reused), or it has no actor under that local name.
    #[error("node {node} has no actor {actor}")]
    UnknownActor {
        /// Node name.
        node: String,
        /// Actor id or local name.
        actor: String,
    },
    /// The actor exists but is of another type than the address claims.
    #[error("actor {actor} on {node} has type {found}, expected {expected}")]
    ActorTypeMismatch {
        /// Node name.
        node: String,
        /// Actor id or local name.
        actor: String,
        /// Type the caller expected.
        expected: String,
        /// Type registered on the node.
        found: String,
    },
    /// The actor type does not declare this message in its
    /// [`messages()`](crate::DistributedActor::messages): on this node (refused before
    /// sending), or on the receiving node (for example it runs an older build). The handler
    /// did not run. The text names the message and the line to add.
    #[error("{}", unknown_message_text(.actor_type, .message, .rust_type.as_deref(), .node.as_deref()))]
    UnknownMessageType {
        /// Actor type's wire name.
        actor_type: String,
        /// The message's wire name; `#` and its 8-hex-digit id when no side knows the name;
        /// for a message this node does not declare, its Rust type.
        message: String,
        /// The message's Rust type as this node's build names it, when known.
        rust_type: Option<String>,
        /// The node whose `messages()` lacks the declaration; `None` for this node.
        node: Option<String>,
    },
    /// Spawning failed: the target node has not registered this actor type
    /// (`ClusterSystem::new(..).register::<A>()`).
    #[error("node {node} cannot spawn {actor_type}: type not registered there")]
    ActorTypeNotRegistered {
        /// Node name.
        node: String,
        /// Actor type's wire name.
        actor_type: String,
    },
    /// The message could not be serialized on this node; nothing was sent.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The receiving node could not decode the message; the handler did not run.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The encoded message exceeds the frame limit (this node's or the receiver's); it was
    /// not sent, or the receiver refused it before the handler ran.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Payload size in bytes.
        size: u64,
        /// Configured maximum.
        limit: u64,
    },
    /// The handler ran, but the receiving node could not serialize its reply.
    #[error("the handler ran but its reply cannot be encoded: {0}")]
    ReplyEncode(String),
    /// The handler ran, but this node could not decode its reply (for example the two nodes
    /// disagree on the reply type).
    #[error("the handler ran but its reply cannot be decoded: {0}")]
    ReplyDecode(String),
    /// The handler ran, but its reply is larger than this node accepts
    /// (`max_frame_size`); the reply was dropped.
    #[error(
        "the reply of {size} bytes exceeds this node's frame limit of {limit}; the handler ran"
    )]
    ReplyTooLarge {
        /// Reply size in bytes.
        size: u64,
        /// This node's frame limit in bytes.
        limit: u64,
    },
    /// The per-node send queue is full. Only returned where the caller chose not to wait.
    #[error("send queue to node {node} is full")]
    QueueFull {
        /// Node name.
        node: String,
    },
    /// The actor stopped before it handled the message.
    #[error("actor stopped before handling the message")]
    ActorStopped,
    /// The handler panicked or its actor stopped while handling; the node keeps running.
    #[error("handler failed: {0}")]
    HandlerFailed(String),
    /// The local cluster system has shut down, or this address was used on a thread that runs
    /// no cluster node.
    #[error("the cluster system is not running")]
    SystemStopped,
}

/// The text of [`RemoteError::UnknownMessageType`]: what is missing where, and the fix.
fn unknown_message_text(
    actor_type: &str,
    message: &str,
    rust_type: Option<&str>,
    node: Option<&str>,
) -> String {
    let handle = match (rust_type, message.starts_with('#')) {
        (Some(ty), false) if node.is_some() => format!("m.handle::<{ty}>({message:?})"),
        (Some(ty), _) => format!("m.handle::<{ty}>(\"a-stable-name\")"),
        (None, false) => format!("m.handle::<..>({message:?})"),
        (None, true) => "m.handle::<..>(..)".to_owned(),
    };
    match node {
        Some(node) => format!(
            "{actor_type} on node {node} does not handle message {message:?}: add {handle} to \
             the messages() of {actor_type} in the build node {node} runs"
        ),
        None => format!(
            "{actor_type} does not declare message {message} for other nodes: add {handle} \
             to the messages() of {actor_type}"
        ),
    }
}

/// `std::any::type_name` without module paths: `Vec<my::Msg>` for `alloc::vec::Vec<my::Msg>`
/// reads `Vec<Msg>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    let flush = |segment: &mut String, out: &mut String| {
        out.push_str(segment.rsplit("::").next().unwrap_or(segment));
        segment.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            flush(&mut segment, &mut out);
            out.push(c);
        }
    }
    flush(&mut segment, &mut out);
    out
}

impl RemoteError {
    /// A codec failure on the request (or on an actor's state shipped for spawning): the
    /// handler did not run.
    pub(crate) fn from_codec(e: CodecError, decoding: bool) -> Self {
        match e {
            CodecError::TooLarge { size, limit } => RemoteError::PayloadTooLarge { size, limit },
            other if decoding => RemoteError::Decode(other.to_string()),
            other => RemoteError::Encode(other.to_string()),
        }
    }

    /// A codec failure on a reply: the handler ran.
    pub(crate) fn from_reply_codec(e: CodecError, decoding: bool) -> Self {
        match e {
            CodecError::TooLarge { size, limit } => RemoteError::ReplyTooLarge { size, limit },
            other if decoding => RemoteError::ReplyDecode(other.to_string()),
            other => RemoteError::ReplyEncode(other.to_string()),
        }
    }

    /// Whether the message is known not to have been handled, so that a retry cannot
    /// duplicate its effect. `false` means the handler may have run (or did run, for the
    /// reply-side errors).
    pub fn is_not_delivered(&self) -> bool {
        // Exhaustive on purpose: a new variant must decide which side it is on.
        match self {
            RemoteError::Timeout(_)
            | RemoteError::NodeGone { .. }
            | RemoteError::HandlerFailed(_)
            | RemoteError::ReplyEncode(_)
            | RemoteError::ReplyDecode(_)
            | RemoteError::ReplyTooLarge { .. } => false,
            RemoteError::NodeUnreachable { .. }
            | RemoteError::UnknownNode(_)
            | RemoteError::UnknownActor { .. }
            | RemoteError::ActorTypeMismatch { .. }
            | RemoteError::UnknownMessageType { .. }
            | RemoteError::ActorTypeNotRegistered { .. }
            | RemoteError::Encode(_)
            | RemoteError::Decode(_)
            | RemoteError::PayloadTooLarge { .. }
            | RemoteError::QueueFull { .. }
            | RemoteError::ActorStopped
            | RemoteError::SystemStopped => true,
        }
    }
}

/// A send that would have had to wait. The message is handed back.
#[non_exhaustive]
pub enum TrySendError<M> {
    /// The per-node send queue is full; retry later or use a waiting send.
    Full(M),
    /// The message cannot be sent at all.
    Failed(M, RemoteError),
}

impl<M> TrySendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Failed(m, _) => m,
        }
    }

    /// Whether the queue was merely full: retrying later (or a waiting send) may succeed.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Why the message cannot be sent at all; `None` when the queue was merely full.
    pub fn failure(&self) -> Option<&RemoteError> {
        match self {
            TrySendError::Full(_) => None,
            TrySendError::Failed(_, e) => Some(e),
        }
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("send queue is full"),
            TrySendError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl<M> std::error::Error for TrySendError<M> {}

/// Wire codes of error replies. The detail string carries the fields, newline-separated.
pub(crate) mod code {
    pub(crate) const UNKNOWN_ACTOR: u16 = 1;
    pub(crate) const UNKNOWN_MESSAGE: u16 = 2;
    pub(crate) const DECODE: u16 = 3;
    pub(crate) const ACTOR_STOPPED: u16 = 4;
    pub(crate) const HANDLER_FAILED: u16 = 5;
    /// The request was too large for the receiver. Earlier builds also sent it for a reply
    /// too large for the caller, with two detail fields; the side marker tells them apart.
    pub(crate) const TOO_LARGE: u16 = 6;
    pub(crate) const TYPE_MISMATCH: u16 = 7;
    /// Only ever about the reply: a request that cannot be encoded is never sent.
    pub(crate) const REPLY_ENCODE: u16 = 8;
    pub(crate) const TYPE_NOT_REGISTERED: u16 = 9;
    pub(crate) const REPLY_TOO_LARGE: u16 = 10;
    pub(crate) const OTHER: u16 = 100;
}

/// Third detail field of code 6 from builds that tell the request side from the reply side.
const REQUEST_SIDE: &str = "request";

pub(crate) fn error_to_wire(e: &RemoteError) -> (u16, String) {
    match e {
        RemoteError::UnknownActor { actor, .. } => (code::UNKNOWN_ACTOR, actor.clone()),
        RemoteError::UnknownMessageType {
            actor_type,
            message,
            ..
        } => (code::UNKNOWN_MESSAGE, format!("{actor_type}\n{message}")),
        RemoteError::Decode(d) => (code::DECODE, d.clone()),
        RemoteError::ReplyEncode(d) => (code::REPLY_ENCODE, d.clone()),
        RemoteError::ActorStopped => (code::ACTOR_STOPPED, String::new()),
        RemoteError::HandlerFailed(d) => (code::HANDLER_FAILED, d.clone()),
        RemoteError::PayloadTooLarge { size, limit } => {
            (code::TOO_LARGE, format!("{size}\n{limit}\n{REQUEST_SIDE}"))
        }
        RemoteError::ReplyTooLarge { size, limit } => {
            (code::REPLY_TOO_LARGE, format!("{size}\n{limit}"))
        }
        RemoteError::ActorTypeMismatch {
            actor,
            expected,
            found,
            ..
        } => (code::TYPE_MISMATCH, format!("{actor}\n{expected}\n{found}")),
        RemoteError::ActorTypeNotRegistered { actor_type, .. } => {
            (code::TYPE_NOT_REGISTERED, actor_type.clone())
        }
        other => (code::OTHER, other.to_string()),
    }
}

/// Turns an error reply back into the variant the remote side raised.
pub(crate) fn error_from_wire(node: &NodeId, code: u16, detail: String) -> RemoteError {
    let node_name = node.name().to_owned();
    let mut parts = detail.split('\n').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    match code {
        code::UNKNOWN_ACTOR => RemoteError::UnknownActor {
            node: node_name,
            actor: detail,
        },
        code::UNKNOWN_MESSAGE => RemoteError::UnknownMessageType {
            actor_type: next(),
            message: next(),
            rust_type: None,
            node: Some(node_name),
        },
        code::DECODE => RemoteError::Decode(detail),
        code::REPLY_ENCODE => RemoteError::ReplyEncode(detail),
        code::ACTOR_STOPPED => RemoteError::ActorStopped,
        code::HANDLER_FAILED => RemoteError::HandlerFailed(detail),
        code::TOO_LARGE => {
            let size = next().parse().unwrap_or(0);
            let limit = next().parse().unwrap_or(0);
            if next() == REQUEST_SIDE {
                RemoteError::PayloadTooLarge { size, limit }
            } else {
                // An earlier build, which sent this code for an oversized request and for an
                // oversized reply alike: the handler may have run.
                RemoteError::HandlerFailed(format!(
                    "a payload of {size} bytes exceeded the limit of {limit} bytes; the \
                     replying node runs an earlier build that does not say whether it was the \
                     request or the reply, so the handler may have run"
                ))
            }
        }
        code::REPLY_TOO_LARGE => RemoteError::ReplyTooLarge {
            size: next().parse().unwrap_or(0),
            limit: next().parse().unwrap_or(0),
        },
        code::TYPE_MISMATCH => RemoteError::ActorTypeMismatch {
            node: node_name,
            actor: next(),
            expected: next(),
            found: next(),
        },
        code::TYPE_NOT_REGISTERED => RemoteError::ActorTypeNotRegistered {
            node: node_name,
            actor_type: detail,
        },
        _ => RemoteError::HandlerFailed(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        let node = NodeId::new("n", 1);
        let cases = [
            RemoteError::UnknownActor {
                node: "n".into(),
                actor: "7".into(),
            },
            RemoteError::UnknownMessageType {
                actor_type: "t".into(),
                message: "m".into(),
                rust_type: None,
                node: Some("n".into()),
            },
            RemoteError::Decode("x".into()),
            RemoteError::ActorStopped,
            RemoteError::HandlerFailed("z".into()),
            RemoteError::PayloadTooLarge { size: 9, limit: 8 },
            RemoteError::ActorTypeMismatch {
                node: "n".into(),
                actor: "a".into(),
                expected: "e".into(),
                found: "f".into(),
            },
            RemoteError::ActorTypeNotRegistered {
                node: "n".into(),
                actor_type: "t".into(),
            },
            RemoteError::ReplyEncode("r".into()),
            RemoteError::ReplyTooLarge { size: 9, limit: 8 },
        ];
        for e in cases {
            let (code, detail) = error_to_wire(&e);
            assert_eq!(error_from_wire(&node, code, detail), e);
        }
    }

    /// Every variant, with whether a retry after it can run the handler a second time.
    fn every_variant() -> Vec<(RemoteError, bool)> {
        let node = || "n".to_owned();
        vec![
            (RemoteError::Timeout(Duration::from_secs(1)), false),
            (RemoteError::NodeUnreachable { node: node() }, true),
            (
                RemoteError::NodeGone {
                    node: NodeId::new("n", 1),
                },
                false,
            ),
            (RemoteError::UnknownNode(node()), true),
            (
                RemoteError::UnknownActor {
                    node: node(),
                    actor: "a".into(),
                },
                true,
            ),
            (
                RemoteError::ActorTypeMismatch {
                    node: node(),
                    actor: "a".into(),
                    expected: "e".into(),
                    found: "f".into(),
                },
                true,
            ),
            (
                RemoteError::UnknownMessageType {
                    actor_type: "t".into(),
                    message: "m".into(),
                    rust_type: None,
                    node: None,
                },
                true,
            ),
            (
                RemoteError::ActorTypeNotRegistered {
                    node: node(),
                    actor_type: "t".into(),
                },
                true,
            ),
            (RemoteError::Encode("e".into()), true),
            (RemoteError::Decode("d".into()), true),
            (RemoteError::PayloadTooLarge { size: 9, limit: 8 }, true),
            (RemoteError::ReplyEncode("e".into()), false),
            (RemoteError::ReplyDecode("d".into()), false),
            (RemoteError::ReplyTooLarge { size: 9, limit: 8 }, false),
            (RemoteError::QueueFull { node: node() }, true),
            (RemoteError::ActorStopped, true),
            (RemoteError::HandlerFailed("h".into()), false),
            (RemoteError::SystemStopped, true),
        ]
    }

    #[test]
    fn only_errors_raised_before_the_handler_ran_are_not_delivered() {
        for (e, not_delivered) in every_variant() {
            assert_eq!(e.is_not_delivered(), not_delivered, "{e:?}");
        }
    }

    #[test]
    fn reply_side_codec_errors_say_the_handler_ran() {
        let too_large = CodecError::TooLarge {
            size: 9000,
            limit: 4096,
        };
        let reply = RemoteError::from_reply_codec(too_large.clone(), true);
        assert_eq!(
            reply,
            RemoteError::ReplyTooLarge {
                size: 9000,
                limit: 4096
            }
        );
        assert_eq!(
            reply.to_string(),
            "the reply of 9000 bytes exceeds this node's frame limit of 4096; the handler ran"
        );
        assert!(!reply.is_not_delivered());
        let request = RemoteError::from_codec(too_large, true);
        assert_ne!(request.to_string(), reply.to_string());
        assert!(request.is_not_delivered());
        let decode = CodecError::Decode {
            format: crate::codec::SerializationFormat::Bincode,
            detail: "x".into(),
        };
        assert!(matches!(
            RemoteError::from_reply_codec(decode.clone(), true),
            RemoteError::ReplyDecode(_)
        ));
        assert!(matches!(
            RemoteError::from_codec(decode, true),
            RemoteError::Decode(_)
        ));
    }

    #[test]
    fn errors_keep_their_side_across_the_wire() {
        let node = NodeId::new("n", 1);
        for (e, not_delivered) in every_variant() {
            let (code, detail) = error_to_wire(&e);
            let back = error_from_wire(&node, code, detail);
            // Variants that never travel (raised on the caller's own node) come back as
            // `HandlerFailed`, which never claims more than it knows.
            assert!(
                back.is_not_delivered() == not_delivered || !back.is_not_delivered(),
                "{e:?} came back as {back:?}"
            );
        }
    }

    #[test]
    fn an_oversized_payload_from_an_earlier_build_may_have_run_the_handler() {
        // Earlier builds sent code 6 with two fields for requests and replies alike.
        let back = error_from_wire(&NodeId::new("n", 1), code::TOO_LARGE, "9000\n4096".into());
        assert!(matches!(back, RemoteError::HandlerFailed(_)), "{back:?}");
        assert!(!back.is_not_delivered());
        // And code 8 was only ever sent for a reply.
        let back = error_from_wire(&NodeId::new("n", 1), 8, "bad".into());
        assert_eq!(back, RemoteError::ReplyEncode("bad".into()));
    }

    #[test]
    fn an_unknown_message_names_the_message_and_the_line_to_add() {
        let remote = RemoteError::UnknownMessageType {
            actor_type: "shop.inventory".into(),
            message: "clear".into(),
            rust_type: Some("Clear".into()),
            node: Some("node-3".into()),
        };
        assert_eq!(
            remote.to_string(),
            "shop.inventory on node node-3 does not handle message \"clear\": add \
             m.handle::<Clear>(\"clear\") to the messages() of shop.inventory in the build \
             node node-3 runs"
        );
        let here = RemoteError::UnknownMessageType {
            actor_type: "shop.inventory".into(),
            message: "shop::Clear".into(),
            rust_type: Some("Clear".into()),
            node: None,
        };
        assert_eq!(
            here.to_string(),
            "shop.inventory does not declare message shop::Clear for other nodes: add \
             m.handle::<Clear>(\"a-stable-name\") to the messages() of shop.inventory"
        );
    }

    #[test]
    fn short_type_names_drop_module_paths() {
        assert_eq!(short_type_name("my_app::msgs::Clear"), "Clear");
        assert_eq!(short_type_name("alloc::vec::Vec<my::Msg>"), "Vec<Msg>");
        assert_eq!(short_type_name("(a::B, &c::D)"), "(B, &D)");
    }
}
