//! `weft demo --scenario nat`: two members behind NAT routers go from
//! relayed to direct.
//!
//! h0 is public; h1 and h2 sit behind nftables `masquerade` routers of
//! their own (the test bed's `nat.rs`), are not in each other's configs and
//! pick no neighbours from the DHT, so they meet only when h1 has traffic
//! for h2. The demo pings h2 from h1 every 20 ms and prints, as `weft
//! status` on h1 reports it, how the path to h2 changes (relayed through
//! h0, then direct through the NATs) with the time since the first ping,
//! then h1's status table with its candidates.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::testbed::{NatMapping, NatRouter, Testbed, TestbedOptions};

/// Longest wait for h1 and h2 to reach h0.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the direct path.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the path is read.
const POLL: Duration = Duration::from_millis(50);
/// The ping stream's interval and limit.
const INTERVAL: Duration = Duration::from_millis(20);
const STREAM_LIMIT: Duration = Duration::from_secs(60);

/// The test bed for the scenario: h1 and h2 behind routers of their own,
/// strangers to each other.
pub(super) fn configure(options: &mut TestbedOptions) {
    options.nats = vec![
        NatRouter::new(NatMapping::EndpointIndependent, vec![1]),
        NatRouter::new(NatMapping::EndpointIndependent, vec![2]),
    ];
    options.unlisted = [(1, 2), (2, 1)].into_iter().collect();
    options
        .extra_config
        .push_str("[neighbours]\nmax = 0\nrandom = 0\n");
}

/// Runs the scenario; returns whether the path became direct.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub(super) fn run(testbed: &Testbed, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    println!("waiting for h1 and h2, each behind its own NAT router, to reach h0 ...");
    testbed.wait_pair(0, 1, ESTABLISH_TIMEOUT)?;
    testbed.wait_pair(0, 2, ESTABLISH_TIMEOUT)?;
    let (h1, h2) = (testbed.host(1), testbed.host(2));
    let target = IpAddr::V4(h2.overlay_ipv4()?);
    println!(
        "\nh1 pings h2 ({target}) every 20 ms; the path to h2 as h1's `weft status` shows it:"
    );
    let stream = h1.ping_stream(target, INTERVAL, STREAM_LIMIT);
    #[allow(clippy::disallowed_methods)] // the demo measures real time
    let start = Instant::now();
    let mut last = String::new();
    let mut direct = false;
    let mut saw_relayed = false;
    while start.elapsed() < DIRECT_TIMEOUT {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let status = h1.status()?;
        let peer = status["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["name"].as_str() == Some("h2")))
            .cloned()
            .unwrap_or_default();
        let path = peer["path"].as_str().unwrap_or("none").to_owned();
        let via: Vec<&str> = peer["via"]
            .as_array()
            .map(|v| v.iter().filter_map(|n| n.as_str()).collect())
            .unwrap_or_default();
        let shown = match path.as_str() {
            "relayed" => format!("relayed via {}", via.join(", ")),
            "punched" => format!(
                "direct through both NATs, to {}",
                peer["endpoint"].as_str().unwrap_or("?")
            ),
            "direct-lan" => "direct over the LAN".to_owned(),
            other => other.to_owned(),
        };
        if shown != last {
            println!(
                "  {:>7.3} s  {shown}  ({} replies so far)",
                start.elapsed().as_secs_f64(),
                stream.replies()
            );
            last = shown;
        }
        saw_relayed |= path == "relayed";
        if path == "punched" || path == "direct-lan" {
            direct = true;
            break;
        }
        std::thread::sleep(POLL);
    }
    let record = stream.stop()?;
    let lost = record.probes.iter().filter(|p| p.rtt.is_none()).count();
    println!(
        "{} pings, {lost} without a reply (the last few may still have been on their way)",
        record.probes.len()
    );
    println!("\n$ weft status      (on h1)");
    print!("{}", h1.status_table()?);
    println!("\nWhat you just saw:");
    if saw_relayed {
        println!(
            "- h1 and h2 had never met: h1's first packet for h2 went through h0, the public member,\n  \
               which relayed it end to end encrypted (h0 cannot read it).\n\
             - Each had learnt from its peers, inside their sessions, the address its NAT gives it\n  \
               (\"reflexive\"), and the two told each other their candidates through h0; packets sent by\n  \
               both sides to each other's candidates opened both NATs, and authenticated pings proved the\n  \
               direct path before any data took it.\n\
             - The traffic then moved to the direct path; h0 carries none of it any more."
        );
    } else {
        println!(
            "- h1 and h2 had never met, but h1 found h2's DHT record, which lists the address h2's NAT\n  \
               gives it (\"reflexive\", as h0 saw and reported it); their DHT traffic to each other's\n  \
               reflexive addresses had already opened both NATs (these routers drop what nobody asked\n  \
               for, as home routers do, so early packets spoil nothing), and the handshake went straight\n  \
               through. Had it not, the traffic would have started through h0 while the two punched\n  \
               (PROTOCOL.md section 16); `weft status` then shows \"via h0\" until the direct path is proven."
        );
    }
    if !direct {
        println!("\nthe path did not become direct within {DIRECT_TIMEOUT:?}");
    }
    Ok(direct)
}
