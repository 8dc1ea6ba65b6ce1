//! The harness measures what it claims: every message is counted, replies are checked, and an
//! 8-byte tell costs the wire size `docs/protocol.md` documents. No timing is asserted.

use std::time::Duration;

use actix_cluster_benches::baseline;
use actix_cluster_benches::cpu;
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
    let piped = pair.ask_pipelined(64, 100, 1_000).expect("pipelined ask");
    assert_eq!(
        (piped.sent, piped.completed, piped.failed),
        (1_000, 1_000, 0)
    );
    assert_eq!(piped.first_error, None);
    assert_eq!(piped.in_flight, 64);
    if cpu::process_cpu_time().is_some() {
        assert!(run.cpu.is_some_and(|c| c > Duration::ZERO), "{:?}", run.cpu);
        assert!(
            piped.cpu.is_some_and(|c| c > Duration::ZERO),
            "{:?}",
            piped.cpu
        );
    }
    assert!(pair.ask_pipelined(0, 0, 10).is_err());
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
    assert!(baseline::raw_tcp_stream_1k(2_000).expect("1 KiB stream") > 0.0);
    let local = baseline::local_do_send_run(1_000).expect("local run");
    assert_eq!(local.processed, 1_000);
    assert_eq!(local.cpu.is_some(), cpu::process_cpu_time().is_some());
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

/// Linux only: the spinning thread times itself with its own thread CPU clock.
#[cfg(target_os = "linux")]
#[test]
fn process_cpu_time_counts_work_on_any_thread() {
    use rustix::time::{ClockId, clock_gettime};
    let before = cpu::process_cpu_time();
    assert!(before.is_some());
    // 20 ms of CPU on another thread, by that thread's own clock (however long the machine
    // takes to give it that much); the calling thread only waits in `join`. The wall-clock
    // deadline keeps a broken clock from hanging the test.
    let spun = std::thread::spawn(|| {
        let own = || {
            let t = clock_gettime(ClockId::ThreadCPUTime);
            Duration::new(
                t.tv_sec.unsigned_abs(),
                u32::try_from(t.tv_nsec).unwrap_or(0),
            )
        };
        let (start, deadline) = (own(), std::time::Instant::now() + Duration::from_secs(20));
        while own().saturating_sub(start) < Duration::from_millis(20) {
            if std::time::Instant::now() > deadline {
                return false;
            }
        }
        true
    })
    .join()
    .expect("busy thread");
    assert!(
        spun,
        "the spinning thread did not get 20 ms of CPU within 20 s"
    );
    let used = cpu::since(before).expect("second reading");
    assert!(used >= Duration::from_millis(20), "{used:?}");
    assert_eq!(
        cpu::per_message_ns(Some(Duration::from_micros(3)), 1_000),
        Some(3.0)
    );
    assert_eq!(cpu::per_message_ns(Some(Duration::from_micros(3)), 0), None);
    assert_eq!(cpu::per_message_ns(None, 10), None);
}
