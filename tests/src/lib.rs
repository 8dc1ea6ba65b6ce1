//! Actors shared by the cross-node tests.

use std::time::Duration;

use actix::prelude::*;
use actix_cluster::prelude::*;
use serde::{Deserialize, Serialize};

/// A counter, the test suite's work horse.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    /// Current value.
    pub n: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Adds to the counter and returns the new value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Add(pub u64);

/// Returns the current value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Get;

/// Sleeps in the actor before answering, to make it slow.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Sleep(pub Duration);

/// Panics in the handler.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Explode;

/// Records the sequence number; replies with every number seen so far, in order.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Seq(pub u64);

/// Returns the recorded sequence numbers.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Vec<u64>")]
pub struct Seen;

/// A message the `Counter` handles locally but never declared for remote use.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Undeclared;

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 {
        self.n += m.0;
        self.n
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.n
    }
}

impl Handler<Sleep> for Counter {
    type Result = ();
    fn handle(&mut self, m: Sleep, _: &mut Context<Self>) {
        // Deliberately blocks the actor's thread: the point is a slow consumer.
        std::thread::sleep(m.0);
    }
}

impl Handler<Explode> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Explode, _: &mut Context<Self>) -> u64 {
        panic!("handler panicked on purpose");
    }
}

impl Handler<Undeclared> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Undeclared, _: &mut Context<Self>) -> u64 {
        0
    }
}

impl DistributedActor for Counter {
    const NAME: &'static str = "tests.counter";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add")
            .handle::<Get>("get")
            .handle::<Sleep>("sleep")
            .handle::<Explode>("explode");
    }
}

/// Records `Seq` numbers in arrival order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recorder {
    /// Numbers seen.
    pub seen: Vec<u64>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Seq> for Recorder {
    type Result = ();
    fn handle(&mut self, m: Seq, _: &mut Context<Self>) {
        self.seen.push(m.0);
    }
}

impl Handler<Seen> for Recorder {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.seen.clone())
    }
}

impl DistributedActor for Recorder {
    const NAME: &'static str = "tests.recorder";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Seq>("seq").handle::<Seen>("seen");
    }
}
