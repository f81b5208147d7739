//! Revocation on real hosts: weft daemons in network namespaces.
//!
//! Three daemons with sessions between all of them. The CA revokes h2's
//! certificate (`weft ca revoke --certificate`), h0 is restarted with the
//! list in `[pki] revocations`, and the test checks what an operator relies
//! on: h0 refuses h2, h1 learns the list from h0 over their session
//! without being told, ends its own session with h2, and both report the
//! list's version and the refusals in `weft status`. Then what it learnt
//! must outlive a restart: h0 is killed, so no peer can tell h1 the list
//! again, and h1, restarted, still holds it (from its state directory) and
//! refuses h2. At start the newer of the saved and the configured list
//! wins, whichever it is. Needs root; without it the test prints a notice
//! and passes (CI runs as root). Every wait has a deadline; the test bed
//! removes what it made.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::time::Duration;

use weft::testbed::{Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);
const SPREAD_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_revocation_given_to_one_daemon_reaches_the_others_and_shuts_the_node_out() {
    if !is_root() {
        eprintln!("skipping: network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let (h0, h1, h2) = (testbed.host(0), testbed.host(1), testbed.host(2));

    let list = h0.dir().join("revocations.crl");
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["ca", "revoke", "--ca-key"])
        .arg(testbed.dir().join("ca/ca.key"))
        .arg("--certificate")
        .arg(h2.dir().join("node.crt"))
        .arg("--out")
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    testbed
        .reconfigure(0, "[pki]\nrevocations = \"revocations.crl\"")
        .unwrap();

    let state = |host: &weft::testbed::Host, peer: &str| host.peer_state(peer).unwrap_or(None);
    testbed
        .wait_until(
            SPREAD_TIMEOUT,
            "the list to reach h1 and h2 to be shut out",
            || {
                let version = |host: &weft::testbed::Host| -> anyhow::Result<Option<u64>> {
                    Ok(host.status()?["revocation_version"].as_u64())
                };
                Ok(version(h0)? == Some(1)
                    && version(h1)? == Some(1)
                    && state(h0, "h2").as_deref() != Some("established")
                    && state(h1, "h2").as_deref() != Some("established")
                    && state(h0, "h1").as_deref() == Some("established"))
            },
        )
        .unwrap();
    assert_eq!(h1.stat("revocation_lists_received").unwrap(), 1);
    assert!(h1.stat("sessions_revoked").unwrap() >= 1, "h1 cut h2 off");
    // h2 keeps calling; whoever it calls refuses it.
    testbed
        .wait_until(SPREAD_TIMEOUT, "a refused handshake from h2", || {
            Ok(h0.stat("handshake_rejected_revoked")? + h1.stat("handshake_rejected_revoked")? > 0)
        })
        .unwrap();
    // h2 itself is not told; it holds no list.
    assert!(h2.status().unwrap().get("revocation_version").is_none());

    // h1 saved what it learnt. h0, the only peer holding the list, is gone
    // for good, and h1 starts again: the list must come from h1's disk.
    let saved = h1.dir().join("state/revocations.crl");
    testbed
        .wait_until(SPREAD_TIMEOUT, "h1 to save the list it learnt", || {
            Ok(saved.exists())
        })
        .unwrap();
    testbed.kill(0).unwrap();
    testbed.restart(1).unwrap();
    let version = |host: &weft::testbed::Host| -> anyhow::Result<Option<u64>> {
        Ok(host.status()?["revocation_version"].as_u64())
    };
    testbed
        .wait_until(RESTART_TIMEOUT, "h1 to come back holding the list", || {
            Ok(version(h1)? == Some(1))
        })
        .unwrap();
    testbed
        .wait_until(RESTART_TIMEOUT, "the restarted h1 to refuse h2", || {
            Ok(h1.stat("handshake_rejected_revoked")? > 0)
        })
        .unwrap();
    assert_ne!(state(h1, "h2").as_deref(), Some("established"));
    assert_eq!(h1.stat("revocation_lists_received").unwrap(), 0);

    // The newer of the configured and the saved list wins at start: a
    // configured version 2 replaces the saved 1, and once saved, a config
    // naming version 1 again does not undo it.
    let old = h1.dir().join("old.crl");
    std::fs::copy(&list, &old).unwrap();
    let next = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["ca", "revoke", "--ca-key"])
        .arg(testbed.dir().join("ca/ca.key"))
        .arg("--list")
        .arg(&old)
        .args(["--name", "nobody-yet", "--out"])
        .arg(h1.dir().join("new.crl"))
        .output()
        .unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    testbed
        .reconfigure(1, "[pki]\nrevocations = \"new.crl\"")
        .unwrap();
    testbed
        .wait_until(RESTART_TIMEOUT, "h1 to start with version 2", || {
            Ok(version(h1)? == Some(2))
        })
        .unwrap();
    let saved_version = || {
        let text = std::fs::read_to_string(&saved).unwrap();
        weft_core::RevocationList::from_pem(&text)
            .unwrap()
            .version()
    };
    testbed
        .wait_until(RESTART_TIMEOUT, "h1 to save version 2", || {
            Ok(saved_version() == 2)
        })
        .unwrap();
    testbed
        .reconfigure(1, "[pki]\nrevocations = \"old.crl\"")
        .unwrap();
    testbed
        .wait_until(RESTART_TIMEOUT, "h1 to come back", || {
            Ok(version(h1)?.is_some())
        })
        .unwrap();
    assert_eq!(
        version(h1).unwrap(),
        Some(2),
        "the older configured list won"
    );
    assert_eq!(saved_version(), 2);
}
