//! Arbitrary peer bytes as a `Membership` frame body: every message kind, and for a SWIM
//! datagram its claimed sender, header and member updates through our foca codec. Decoding
//! must return a message or an error, never panic, and a decoded message must encode back to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    actix_cluster::__fuzz::decode_membership(data);
});
