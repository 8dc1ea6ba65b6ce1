//! Arbitrary bytes as a stored state record: the decoder must return a record or a `Corrupt`
//! error, never panic (a damaged or foreign store file is read through it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    actix_cluster::__fuzz::decode_state_record(data);
});
