//! Arbitrary peer bytes through the frame decoder: it must return frames or an error, never
//! panic, and never allocate past the announced (and checked) frame size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    actix_cluster::__fuzz::decode_frames(data, 1 << 20);
});
