//! Arbitrary peer bytes as a `Raft` frame body: the header, then the payload as the receiver
//! decodes it (each request's bincode, each response type, a snapshot chunk and the snapshot
//! it carries). Decoding must return a value or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    actix_cluster::__fuzz::decode_raft(data, 1 << 20);
});
