//! The README's first command, `weft demo`, and its discovery scenario run
//! end to end as a newcomer would run them (as root: they build network
//! namespaces), and exit 0 with every pair reached.

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
        eprintln!("skipping: network namespace tests need root");
        return;
    }
    let (ok, text) = demo(&["--nodes", "3"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("every node reached every other one"),
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
        eprintln!("skipping: network namespace tests need root");
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
