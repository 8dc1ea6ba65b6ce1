//! Snapshot transfer in chunks: a snapshot may be far larger than one frame, so the sender cuts
//! its encoding into frame-sized chunks, sent one at a time, and the receiver reassembles them
//! here before installing. Sans-IO: the caller passes `now` and owns the replies.
//!
//! Rules the receiver enforces, each a typed [`ChunkError`] sent back to the sender (which fails
//! the transfer; openraft sends the snapshot again later):
//! - one transfer at a time: only the Raft leader sends snapshots, so a transfer that starts
//!   (the chunk at offset 0, from any sender) replaces any unfinished one, and the memory held
//!   is that of one snapshot at most;
//! - its declared size is checked against the limit before any byte is kept, and memory grows
//!   only with the bytes that arrived;
//! - chunks must arrive in order, from the sender that started the transfer, and add up to
//!   exactly the declared size; a chunk of another transfer changes nothing;
//! - a transfer that sees no chunk for `idle` is forgotten ([`Assembly::sweep`]).

use std::time::{Duration, Instant};

/// Bytes of a chunk's header in the request body: `transfer u64` · `offset u64` · `total u64`.
pub(super) const CHUNK_HEADER: usize = 24;

/// One chunk as it arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk<'a> {
    /// Chosen by the sender; the same for every chunk of one snapshot.
    pub(super) transfer: u64,
    /// Position of `data` in the snapshot's encoding.
    pub(super) offset: u64,
    /// Size of the whole encoding.
    pub(super) total: u64,
    pub(super) data: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Reads a chunk from a request body; `None` if it is shorter than the header.
    pub(super) fn parse(body: &'a [u8]) -> Option<Self> {
        let (header, data) = body.split_at_checked(CHUNK_HEADER)?;
        let field = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Some(Self {
            transfer: field(0),
            offset: field(1),
            total: field(2),
            data,
        })
    }

    /// Appends the chunk's request body to `out`.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.reserve(CHUNK_HEADER + self.data.len());
        out.extend_from_slice(&self.transfer.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(self.data);
    }
}

/// Why a chunk was refused. The sender's transfer fails with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ChunkError {
    #[error("snapshot of {total} bytes exceeds this node's limit of {limit} bytes")]
    TooLarge { total: u64, limit: u64 },
    #[error("no transfer {transfer} in progress from this sender (forgotten or replaced)")]
    UnknownTransfer { transfer: u64 },
    #[error("chunk at offset {got} of transfer {transfer}, expected offset {expected}")]
    OutOfOrder {
        transfer: u64,
        expected: u64,
        got: u64,
    },
    #[error("chunk of transfer {transfer} ends past its declared size {total}")]
    Overflow { transfer: u64, total: u64 },
}

#[derive(Debug)]
struct Transfer {
    id: u64,
    total: u64,
    buf: Vec<u8>,
    touched: Instant,
}

/// The unfinished snapshot transfer of one node, if any, with its sender.
#[derive(Debug)]
pub(super) struct Assembly<K> {
    limit: u64,
    idle: Duration,
    current: Option<(K, Transfer)>,
}

/// What the receiver keeps allocated before the bytes arrive, at most.
const INITIAL_CAPACITY: u64 = 1 << 20;

impl<K: Eq> Assembly<K> {
    pub(super) fn new(limit: u64, idle: Duration) -> Self {
        Self {
            limit,
            idle,
            current: None,
        }
    }

    /// Forgets the unfinished transfer if it has seen no chunk for `idle`.
    pub(super) fn sweep(&mut self, now: Instant) {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, t)| now.saturating_duration_since(t.touched) >= self.idle)
        {
            self.current = None;
        }
    }

    /// Takes one chunk from `from`. `Ok(Some(bytes))` when it completed a snapshot (the
    /// transfer is then forgotten), `Ok(None)` when more chunks are due.
    pub(super) fn accept(
        &mut self,
        from: K,
        chunk: Chunk<'_>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        self.sweep(now);
        let transfer = chunk.transfer;
        if chunk.offset == 0 {
            // A new transfer: whatever was unfinished is abandoned (the leader moved on).
            self.current = None;
            if chunk.total > self.limit {
                return Err(ChunkError::TooLarge {
                    total: chunk.total,
                    limit: self.limit,
                });
            }
            let fresh = Transfer {
                id: transfer,
                total: chunk.total,
                // Memory follows the bytes that arrive, not the size the sender declared.
                buf: Vec::with_capacity(chunk.total.min(INITIAL_CAPACITY) as usize),
                touched: now,
            };
            self.current = Some((from, fresh));
        } else if !self.current.as_ref().is_some_and(|(sender, t)| {
            *sender == from && t.id == transfer && t.total == chunk.total
        }) {
            // A chunk of a transfer that is not the current one must not disturb it.
            return Err(ChunkError::UnknownTransfer { transfer });
        }
        let Some((_, t)) = &mut self.current else {
            return Err(ChunkError::UnknownTransfer { transfer });
        };
        let expected = t.buf.len() as u64;
        let result = if chunk.offset != expected {
            Err(ChunkError::OutOfOrder {
                transfer,
                expected,
                got: chunk.offset,
            })
        } else if expected + chunk.data.len() as u64 > t.total {
            Err(ChunkError::Overflow {
                transfer,
                total: t.total,
            })
        } else {
            if t.buf.len() as u64 * 2 >= t.total {
                // Past half way: one allocation to the end, instead of doubling past it.
                t.buf.reserve_exact((t.total - expected) as usize);
            }
            t.buf.extend_from_slice(chunk.data);
            t.touched = now;
            Ok(t.buf.len() as u64 == t.total)
        };
        match result {
            Ok(false) => Ok(None),
            Ok(true) => Ok(self.current.take().map(|(_, t)| t.buf)),
            Err(e) => {
                self.current = None;
                Err(e)
            }
        }
    }

    /// Unfinished transfers (for tests).
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        usize::from(self.current.is_some())
    }
}

/// Cuts `bytes` into chunks whose request bodies are at most `max_body` bytes (header included).
pub(super) fn chunks(
    transfer: u64,
    bytes: &[u8],
    max_body: usize,
) -> impl Iterator<Item = Chunk<'_>> {
    let step = max_body.saturating_sub(CHUNK_HEADER).max(1);
    let total = bytes.len() as u64;
    // An empty encoding still takes one (empty) chunk, so the receiver sees the transfer end.
    let count = bytes.len().div_ceil(step).max(1);
    (0..count).map(move |i| {
        let start = (i * step).min(bytes.len());
        let end = (start + step).min(bytes.len());
        Chunk {
            transfer,
            offset: start as u64,
            total,
            data: &bytes[start..end],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn body(c: &Chunk<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        c.write(&mut out);
        out
    }

    #[test]
    fn a_chunk_survives_its_encoding() {
        let c = Chunk {
            transfer: 7,
            offset: 1 << 40,
            total: u64::MAX,
            data: b"abc",
        };
        let bytes = body(&c);
        let back = Chunk::parse(&bytes).expect("parses");
        assert_eq!(
            (back.transfer, back.offset, back.total, back.data),
            (7, 1 << 40, u64::MAX, &b"abc"[..])
        );
        assert!(Chunk::parse(&bytes[..CHUNK_HEADER - 1]).is_none());
        assert!(Chunk::parse(&bytes[..CHUNK_HEADER]).is_some_and(|c| c.data.is_empty()));
    }

    #[test]
    fn chunks_reassemble_in_order() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut a = Assembly::new(1 << 20, IDLE);
        let now = Instant::now();
        let all: Vec<_> = chunks(1, &data, 1000).collect();
        assert_eq!(all.len(), 11);
        for c in &all[..10] {
            assert!(body(c).len() <= 1000);
            assert_eq!(a.accept("leader", *c, now), Ok(None));
        }
        assert_eq!(a.accept("leader", all[10], now), Ok(Some(data)));
        assert_eq!(a.in_progress(), 0);
    }

    #[test]
    fn an_empty_snapshot_is_one_chunk() {
        let mut a = Assembly::new(10, IDLE);
        let all: Vec<_> = chunks(3, &[], 100).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(a.accept(1, all[0], Instant::now()), Ok(Some(Vec::new())));
    }

    #[test]
    fn a_snapshot_as_large_as_the_limit_is_accepted() {
        let data = [7u8; 100];
        let mut a = Assembly::new(100, IDLE);
        let mut done = None;
        for c in chunks(1, &data, CHUNK_HEADER + 30) {
            done = a.accept(1, c, Instant::now()).expect("accepted");
        }
        assert_eq!(done, Some(data.to_vec()));
    }

    #[test]
    fn an_oversized_snapshot_is_refused_before_any_byte_is_kept() {
        let mut a = Assembly::new(100, IDLE);
        let c = Chunk {
            transfer: 1,
            offset: 0,
            total: 101,
            data: &[0; 10],
        };
        assert_eq!(
            a.accept(1, c, Instant::now()),
            Err(ChunkError::TooLarge {
                total: 101,
                limit: 100
            })
        );
        assert_eq!(a.in_progress(), 0);
    }

    #[test]
    fn gaps_overflows_and_strays_are_refused() {
        let now = Instant::now();
        let data = [1u8; 30];
        let all: Vec<_> = chunks(5, &data, CHUNK_HEADER + 10).collect();
        let mut a = Assembly::new(1000, IDLE);

        // A gap ends the transfer.
        a.accept(1, all[0], now).expect("first");
        assert!(matches!(
            a.accept(1, all[2], now),
            Err(ChunkError::OutOfOrder {
                expected: 10,
                got: 20,
                ..
            })
        ));
        assert!(matches!(
            a.accept(1, all[1], now),
            Err(ChunkError::UnknownTransfer { transfer: 5 })
        ));

        // Bytes past the declared size end the transfer.
        a.accept(1, all[0], now).expect("restart");
        let long = Chunk {
            data: &[0; 21],
            ..all[1]
        };
        assert!(matches!(
            a.accept(1, long, now),
            Err(ChunkError::Overflow { total: 30, .. })
        ));
        assert_eq!(a.in_progress(), 0);

        // A chunk of an older transfer leaves the current one alone.
        a.accept(1, all[0], now).expect("restart");
        let stray = Chunk {
            transfer: 4,
            ..all[1]
        };
        assert!(a.accept(1, stray, now).is_err());
        assert_eq!(a.accept(1, all[1], now), Ok(None));
        assert_eq!(a.accept(1, all[2], now), Ok(Some(data.to_vec())));
    }

    #[test]
    fn one_transfer_at_a_time_and_a_new_one_replaces_the_old() {
        let now = Instant::now();
        let (x, y) = ([1u8; 20], [2u8; 20]);
        let xs: Vec<_> = chunks(1, &x, CHUNK_HEADER + 10).collect();
        let ys: Vec<_> = chunks(2, &y, CHUNK_HEADER + 10).collect();
        let mut a = Assembly::new(1000, IDLE);
        a.accept("a", xs[0], now).expect("a starts");
        // b (a new leader) starts: a's transfer is abandoned.
        a.accept("b", ys[0], now).expect("b starts");
        assert!(matches!(
            a.accept("a", xs[1], now),
            Err(ChunkError::UnknownTransfer { transfer: 1 })
        ));
        // That refusal did not disturb b's transfer, nor does b's chunk from another sender.
        assert!(a.accept("c", ys[1], now).is_err());
        assert_eq!(a.accept("b", ys[1], now), Ok(Some(y.to_vec())));
        // b restarts with a new transfer: the old one is replaced.
        let ys2: Vec<_> = chunks(3, &y, CHUNK_HEADER + 10).collect();
        a.accept("b", ys[0], now).expect("b starts again");
        a.accept("b", ys2[0], now).expect("b restarts");
        assert!(a.accept("b", ys[1], now).is_err());
        assert_eq!(a.accept("b", ys2[1], now), Ok(Some(y.to_vec())));
    }

    #[test]
    fn an_idle_transfer_is_forgotten() {
        let start = Instant::now();
        let data = [9u8; 20];
        let all: Vec<_> = chunks(1, &data, CHUNK_HEADER + 10).collect();
        let mut a = Assembly::new(1000, IDLE);
        a.accept(1, all[0], start).expect("first");
        a.sweep(start + IDLE / 2);
        assert_eq!(a.in_progress(), 1);
        a.sweep(start + IDLE);
        assert_eq!(a.in_progress(), 0);
        a.accept(1, all[0], start).expect("again");
        assert!(matches!(
            a.accept(1, all[1], start + IDLE),
            Err(ChunkError::UnknownTransfer { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_split_reassembles(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                 max_body in (CHUNK_HEADER + 1)..600usize) {
            let mut a = Assembly::new(4096, IDLE);
            let now = Instant::now();
            let mut done = None;
            for c in chunks(9, &data, max_body) {
                prop_assert!(done.is_none(), "chunks after completion");
                prop_assert!(body(&c).len() <= max_body);
                done = a.accept(0u8, c, now).expect("in-order chunks are accepted");
            }
            prop_assert_eq!(done, Some(data));
        }

        #[test]
        fn arbitrary_chunks_never_panic_or_exceed_the_limit(
            steps in proptest::collection::vec(
                (0u8..3, 0u64..4, 0u64..300, 0u64..300, 0usize..64), 0..64)) {
            let mut a = Assembly::new(256, IDLE);
            let now = Instant::now();
            let data = [0u8; 64];
            for (from, transfer, offset, total, len) in steps {
                let c = Chunk { transfer, offset, total, data: &data[..len] };
                if let Ok(Some(bytes)) = a.accept(from, c, now) {
                    prop_assert!(bytes.len() as u64 == total && total <= 256);
                }
                prop_assert!(a.current.iter().all(|(_, t)| t.buf.len() as u64 <= t.total));
            }
        }
    }
}
