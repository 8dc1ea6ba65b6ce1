//! The harness measures what it claims: every message is counted, replies are checked, and an
//! 8-byte tell costs the wire size `docs/protocol.md` documents. No timing is asserted.

use actix_cluster_benches::baseline;
use actix_cluster_benches::latency::Recorder;
use actix_cluster_benches::scenario::{Pair, Security};

#[test]
fn tell_counts_every_processed_message_and_an_8_byte_tell_is_26_wire_bytes() {
    let pair = Pair::start(Security::Plain).expect("pair");
    let run = pair.tell_8b(100, 2_000).expect("tell");
    assert_eq!(run.processed, run.sent);
    // The closing request (26 bytes, empty payload) rides in the measured window.
    let per_message = run.bytes_written as f64 / run.sent as f64;
    assert!(
        (26.0..26.5).contains(&per_message),
        "{per_message} bytes per tell"
    );
    let big = pair.tell_1k(10, 200).expect("tell 1k");
    assert_eq!(big.processed, big.sent);
    let recorder = pair
        .ask(Recorder::new().expect("recorder"), 10, 150)
        .expect("ask");
    let recorder = pair.ask(recorder, 0, 50).expect("second round");
    assert_eq!(recorder.percentiles().samples, 200);
    pair.stop();
}

#[test]
fn tls_pair_delivers_and_answers() {
    let pair = Pair::start(Security::Tls).expect("pair");
    let run = pair.tell_8b(10, 500).expect("tell");
    assert_eq!(run.processed, run.sent);
    let recorder = pair.ask(Recorder::new().expect("recorder"), 10, 50);
    assert_eq!(recorder.expect("ask").percentiles().samples, 50);
    pair.stop();
}

#[test]
fn baselines_complete_their_runs() {
    assert!(baseline::local_do_send(1_000).expect("local") > 0.0);
    assert!(baseline::raw_tcp_stream(10_000).expect("stream") > 0.0);
    assert_eq!(baseline::raw_tcp_rtt(10, 100).expect("rtt").samples, 100);
    let rtt = baseline::RawRtt::start().expect("rtt");
    rtt.warm_up(5).expect("warm-up");
    rtt.round(30).expect("round 1");
    rtt.round(20).expect("round 2");
    assert_eq!(rtt.finish().expect("finish").samples, 50);
    let relay = baseline::RawRtt::start_relay().expect("relay");
    relay.warm_up(5).expect("warm-up");
    relay.round(40).expect("round");
    assert_eq!(relay.finish().expect("finish").samples, 40);
}
