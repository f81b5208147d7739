//! Real-host QoS (issue 6, item 5): realtime traffic stays fast while a
//! bulk transfer fills a 20 Mbit/s bottleneck, and a capped class keeps to
//! its rate.
//!
//! Three daemons in network namespaces; h0's underlay egress is shaped by
//! `tc tbf rate 20mbit` with a 100 ms queue (as a modem has). A realtime
//! stream (one 160-byte UDP datagram every 20 ms, DSCP EF set with
//! `IP_TOS`, echoed by h1) measures RTT and loss on the idle link, then
//! while `iperf3` pushes TCP from h0 to h1 as fast as it can. First with
//! QoS off (no `[qos]`: weft sends at once, the queue forms in the tbf),
//! then with QoS on (`[qos] uplink = "19mbit"`: the queue forms in weft,
//! where realtime goes first and CoDel keeps bulk's queue short). See
//! `weft::testbed::run_qos_experiment`; `weft demo --scenario qos` and
//! `bench/qos.sh` run the same.
//!
//! Asserted, with QoS on (the functional targets): the realtime
//! stream loses nothing under load and its p99 RTT stays within 5 ms of its
//! idle p99; the class capped at 5 Mbit/s, offered 10 Mbit/s of UDP,
//! delivers its cap within 5 %, and so does all traffic to h2, which h0
//! limits to 4 Mbit/s with `[[qos.peers]]` (underlay rates: iperf3's
//! payload rate plus every header, which is what weft's limits count). Then
//! `weft qos` and `weft status --qos [--json]` show the classes. With QoS
//! off the test asserts only that the queue is visible (the median RTT
//! under load at least 3 ms above idle), which proves it measures what it
//! claims to. (Without QoS the realtime stream waits behind whatever TCP
//! holds in the tbf's queue at that moment, which follows CUBIC's sawtooth
//! and rarely reaches the 100 ms limit in a 10 s run: loaded p99 12-66 ms
//! over six release runs, 13-23 ms with debug daemons; the median rose from
//! about 1 ms to 7-11 ms in every run.) The bulk transfer must really load
//! the link in both phases (at least 80 % of the bottleneck's payload
//! capacity, so the test cannot pass on an idle link); the benchmark's 90 %
//! target is printed, not asserted. These are timing assertions on a shared
//! machine: the margins are the issue's own, the realtime stream's packets
//! are tiny, and 20 Mbit/s is far below what the daemons can carry. What
//! would not fit in them is the CPU scheduler of a busy machine (measured
//! here beside two compilers: one idle round trip in ten took a 4 ms tick
//! longer, an idle p99 of 5-10 ms), so the daemons, the echo server and the
//! stream's sender run as realtime tasks (`chrt -r 10`, see
//! `testbed::boost_thread`) in both phases; iperf3 does not.
//!
//! Needs root and `iperf3` (`scripts/install-test-deps.sh`); without them
//! it prints why and passes, except under `CI=true`, where a missing
//! `iperf3` fails. Every stream and child process is bounded in time; the
//! test bed removes namespaces and daemons also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test
#![allow(clippy::print_stdout)] // the test prints its measurements

use std::time::Duration;

use weft::testbed::{QosPlan, Testbed, TestbedOptions, have_iperf3, is_root, run_qos_experiment};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn realtime_stays_fast_under_a_saturating_bulk_transfer_and_a_capped_class_keeps_its_rate() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    if !have_iperf3() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "iperf3 is missing (scripts/install-test-deps.sh installs it)"
        );
        weft::testbed::skip("iperf3 is not installed (scripts/install-test-deps.sh)");
        return;
    }
    let testbed = Testbed::new(3, TestbedOptions::new(env!("CARGO_BIN_EXE_weft")))
        .expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let plan = QosPlan::default();
    let report = run_qos_experiment(&testbed, &plan, ESTABLISH_TIMEOUT, |step| {
        println!("{step}");
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", testbed.log_tails()));
    println!("{}", report.render());
    for phase in &report.phases {
        let qos = if phase.qos_on { "on" } else { "off" };
        if let Some(info) = &phase.qos {
            println!(
                "h0 after the loaded run, QoS {qos}:\n{}",
                weft::qos::render_table(info)
            );
        }
        println!(
            "h0's bottleneck after the loaded run, QoS {qos}:\n{}",
            phase.bottleneck
        );
    }

    let [off, on] = report.phases.as_slice() else {
        panic!("two phases expected");
    };
    let p50 = |r: &weft::testbed::RealtimeRecord| r.quantile(0.5).unwrap();
    let p99 = |r: &weft::testbed::RealtimeRecord| r.quantile(0.99).unwrap();
    // The bottleneck's capacity for iperf3's TCP payload: each 1340-byte
    // packet on the TUN carries 1288 bytes of payload (MSS with
    // timestamps) and takes 1340 + 61 (tunnel and outer headers) + 14
    // (Ethernet, which tbf counts) bytes of the link.
    let capacity = plan.link_bps as f64 * 1288.0 / 1415.0;
    for phase in [off, on] {
        let share = phase.bulk.received_bps / capacity;
        println!(
            "QoS {}: bulk got {:.2} Mbit/s = {:.1} % of the link's TCP payload capacity ({:.2} Mbit/s)",
            if phase.qos_on { "on" } else { "off" },
            phase.bulk.received_bps / 1e6,
            share * 100.0,
            capacity / 1e6
        );
        assert!(
            share >= 0.8,
            "the bulk transfer did not load the link (QoS on: {})",
            phase.qos_on
        );
        assert!(
            phase.idle.lost() == 0,
            "the idle link lost realtime datagrams"
        );
    }
    assert!(
        p50(&off.loaded) >= p50(&off.idle) + Duration::from_millis(3),
        "with QoS off the bottleneck's queue should show: idle median {:?}, loaded median {:?}",
        p50(&off.idle),
        p50(&off.loaded)
    );
    assert_eq!(on.loaded.lost(), 0, "QoS on: realtime datagrams lost");
    assert!(
        p99(&on.loaded) <= p99(&on.idle) + Duration::from_millis(5),
        "QoS on: realtime p99 {:?} under load, idle {:?}",
        p99(&on.loaded),
        p99(&on.idle)
    );
    // What an operator sees of it: `weft qos` and `weft status --qos`.
    let sender = testbed.host(plan.sender);
    let cli = |args: &[&str]| {
        let output = sender
            .weft()
            .args(args)
            .arg("--socket")
            .arg(sender.socket_path())
            .output()
            .unwrap();
        assert!(output.status.success(), "weft {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let table = cli(&["qos"]);
    println!("$ weft qos\n{table}");
    assert!(
        table.starts_with("egress shaped to 19.00 Mbit/s"),
        "{table}"
    );
    let capped_row = table.lines().find(|l| l.starts_with("capped")).unwrap();
    assert!(capped_row.contains("5.00 Mbit/s"), "{table}");
    let status: serde_json::Value =
        serde_json::from_str(&cli(&["status", "--qos", "--json"])).unwrap();
    assert_eq!(status["name"], "h0");
    let classes = status["qos"]["classes"].as_array().unwrap();
    let names: Vec<&str> = classes
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["realtime", "interactive", "bulk", "background", "capped"]
    );
    let bulk = &classes[2];
    assert!(bulk["sent_packets"].as_u64().unwrap() > 1000, "{bulk}");
    assert!(cli(&["status", "--qos"]).contains("CLASS"));

    for limit in [report.cap.as_ref().unwrap(), report.peer.as_ref().unwrap()] {
        assert!(
            limit.error().abs() <= 0.05,
            "{} got {:.3} Mbit/s (underlay) for a limit of {:.3} Mbit/s",
            limit.what,
            limit.received_underlay_bps / 1e6,
            limit.cap_bps as f64 / 1e6
        );
    }
}
