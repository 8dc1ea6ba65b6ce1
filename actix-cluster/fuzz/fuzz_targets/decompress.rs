//! Arbitrary bytes as an LZ4 payload (`[u32 LE size][block]`): a declared size above the limit
//! must be refused before allocating, and a corrupt block must be an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    actix_cluster::__fuzz::decompress(data, 1 << 20);
});
