//! The README's first command, `weft demo`, and its discovery, NAT and
//! multicast scenarios run end to end as a newcomer would run them (as root: they
//! build network namespaces), and exit 0: every pair reached, every
//! multicast member served and the non-member not, and every link a phase
//! cut restored by the end.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use weft::testbed::is_root;

fn demo(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("demo")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_default_demo_reaches_every_pair() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let (ok, text) = demo(&["--nodes", "3"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("every node reached every other one"),
        "{text}"
    );
    // The failover phase cuts h0-h1 and must leave it restored.
    assert!(
        text.contains("the overlay before failover: all 3 direct links up"),
        "{text}"
    );
    assert!(
        text.contains("the overlay now: all 3 direct links up"),
        "{text}"
    );
    assert!(
        text.contains("all namespaces, links, daemons and files removed"),
        "{text}"
    );
}

#[test]
fn the_discovery_demo_finds_every_node_from_one_bootstrap_and_survives_its_loss() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let (ok, text) = demo(&["--scenario", "discovery", "--nodes", "4"]);
    assert!(ok, "{text}");
    assert!(text.contains("$ weft lookup h1"), "{text}");
    assert!(text.contains("killed h0"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert!(
        text.contains("all namespaces, links, daemons and files removed"),
        "{text}"
    );
}

#[test]
fn the_nat_demo_ends_with_a_direct_path_through_both_nats() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    if !weft::testbed::have_nft() {
        weft::testbed::skip("nft is not installed (run scripts/install-test-deps.sh as root)");
        return;
    }
    let (ok, text) = demo(&["--scenario", "nat", "--nodes", "3"]);
    assert!(ok, "{text}");
    assert!(text.contains("direct through both NATs"), "{text}");
    assert!(text.contains("direct (punched)"), "{text}");
    assert!(
        text.contains("all namespaces, NAT routers, links, daemons and files removed"),
        "{text}"
    );
}

#[test]
fn the_multicast_demo_shows_the_tree_and_delivers_to_members_only() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let (ok, text) = demo(&["--scenario", "multicast", "--nodes", "5"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("$ weft group tree 239.1.2.3 --source h0"),
        "{text}"
    );
    assert!(text.contains("239.1.2.3  no      h1, h2, h3 (3)"), "{text}");
    for member in ["h1", "h2", "h3"] {
        assert!(
            text.lines()
                .any(|line| line.starts_with(member) && line.contains("yes     300/300   0")),
            "{member}: {text}"
        );
    }
    assert!(text.contains("h4    no      0"), "{text}");
    assert!(text.contains("delivery went on after the cut"), "{text}");
    // The cut tree link is restored, so the overlay is whole afterwards.
    assert!(
        text.contains("link (blackhole routes removed): both ends see it up again"),
        "{text}"
    );
    assert!(
        text.contains("the overlay now: all 10 direct links up"),
        "{text}"
    );
    assert!(
        text.contains("all namespaces, links, daemons and files removed"),
        "{text}"
    );
}
