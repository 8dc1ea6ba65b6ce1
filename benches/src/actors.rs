//! The receiving actor of every actor benchmark and its messages.

use actix::prelude::*;
use actix_cluster::prelude::*;
use serde::{Deserialize, Serialize};

/// Counts the one-way messages it has processed and echoes pings.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sink {
    /// One-way messages handled so far.
    pub processed: u64,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

/// An 8-byte one-way message.
///
/// A byte array rather than a `u64`: bincode writes integers as varints (1, 3, 5 or 9 bytes),
/// while `[u8; 8]` is always exactly 8 bytes on the wire, which is what the scenario promises.
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Tell8(pub [u8; 8]);

/// A one-way message carrying a 1 KiB payload (1,024 bytes plus bincode's length prefix).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Tell1k(pub Vec<u8>);

/// [`Tell1k`] with its payload as [`bytes::Bytes`]: serde hands it to the format as one byte
/// string, where a `Vec<u8>` is a sequence that every serde format walks one element at a
/// time. The type a user picks for bulk bytes (or `#[serde(with = "serde_bytes")]`).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Tell1kBytes(pub bytes::Bytes);

/// Asks how many one-way messages the sink has processed.
///
/// Because a mailbox is FIFO and messages from one sender arrive in order, the reply to this
/// request comes after every earlier message from the same sender was handled: it is the
/// acknowledgement that ends a throughput run.
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Processed;

/// A request whose reply is its own argument: the unit of the latency scenarios.
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Ping(pub u64);

impl Handler<Tell8> for Sink {
    type Result = ();
    fn handle(&mut self, m: Tell8, _: &mut Context<Self>) {
        std::hint::black_box(m.0);
        self.processed += 1;
    }
}

impl Handler<Tell1k> for Sink {
    type Result = ();
    fn handle(&mut self, m: Tell1k, _: &mut Context<Self>) {
        std::hint::black_box(&m.0);
        self.processed += 1;
    }
}

impl Handler<Tell1kBytes> for Sink {
    type Result = ();
    fn handle(&mut self, m: Tell1kBytes, _: &mut Context<Self>) {
        std::hint::black_box(&m.0);
        self.processed += 1;
    }
}

impl Handler<Processed> for Sink {
    type Result = u64;
    fn handle(&mut self, _: Processed, _: &mut Context<Self>) -> u64 {
        self.processed
    }
}

impl Handler<Ping> for Sink {
    type Result = u64;
    fn handle(&mut self, m: Ping, _: &mut Context<Self>) -> u64 {
        m.0
    }
}

impl DistributedActor for Sink {
    const NAME: &'static str = "bench.sink";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Tell8>("tell8")
            .handle::<Tell1k>("tell1k")
            .handle::<Tell1kBytes>("tell1k_bytes")
            .handle::<Processed>("processed")
            .handle::<Ping>("ping");
    }
}
