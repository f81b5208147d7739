//! Room in the kernel's neighbour tables for a large test bed.
//!
//! The kernel keeps one ARP table and one NDP table for all network
//! namespaces, and their hard limit (`gc_thresh3`, 1024 entries by default)
//! can be set only in the root namespace. N daemons that talk to each other
//! need up to N·(N−1) entries on their underlay veths and as many again on
//! their TUN devices once every pair has sent a packet, so a test bed of
//! about 24 or more hosts can fill the table: the kernel logs "neighbor
//! table overflow!" and sends fail with ENOBUFS before any packet reaches
//! weft. A failure of the test bed would then look like one of weft's.
//!
//! [`NeighbourRoom::for_hosts`] raises `gc_thresh2`/`gc_thresh3` of both
//! tables when they are too low for the test bed, and puts the values it
//! found back when the last test bed of the process that raised them is
//! dropped. It only raises: a limit someone set higher stays as it is. A
//! test process killed before that leaves the raised limits behind, which
//! harms nothing (they only let the tables grow larger before entries are
//! refused).

use std::fs;
use std::sync::Mutex;

use anyhow::Context;

/// The limits this module may raise, as files under /proc/sys.
const LIMITS: [&str; 4] = [
    "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
    "/proc/sys/net/ipv6/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv6/neigh/default/gc_thresh3",
];

/// Test beds holding raised limits in this process, and the values found
/// before the first raise (file, value) to put back after the last.
static HELD: Mutex<(usize, Vec<(&'static str, u64)>)> = Mutex::new((0, Vec::new()));

/// Entries a test bed of `hosts` may need: underlay and TUN neighbours of
/// every host for every other, doubled for entries the kernel has not yet
/// collected.
pub(super) fn entries_needed(hosts: usize) -> u64 {
    4 * (hosts as u64) * (hosts.saturating_sub(1) as u64)
}

/// While alive, the neighbour tables have room for a test bed's hosts.
#[derive(Debug)]
pub(super) struct NeighbourRoom(());

impl NeighbourRoom {
    /// Raises the limits if `hosts` would not fit (see the module doc).
    /// If a raise fails, whatever this call raised is put back (when no
    /// other test bed holds it) before the error is returned.
    pub(super) fn for_hosts(hosts: usize) -> anyhow::Result<Self> {
        lock_held().0 += 1;
        // From here, dropping `room` (also on the error below) releases
        // this test bed's hold.
        let room = NeighbourRoom(());
        room.raise(entries_needed(hosts))?;
        Ok(room)
    }

    fn raise(&self, hard: u64) -> anyhow::Result<()> {
        let mut held = lock_held();
        for file in LIMITS {
            let want = if file.ends_with("thresh2") {
                hard / 2
            } else {
                hard
            };
            let current = read_limit(file)?;
            if current < want {
                if !held.1.iter().any(|&(f, _)| f == file) {
                    held.1.push((file, current));
                }
                fs::write(file, want.to_string())
                    .with_context(|| format!("raising {file} from {current} to {want}"))?;
            }
        }
        Ok(())
    }
}

/// The holds and saved limits, also after a test panicked holding them.
fn lock_held() -> std::sync::MutexGuard<'static, (usize, Vec<(&'static str, u64)>)> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for NeighbourRoom {
    fn drop(&mut self) {
        let mut held = lock_held();
        held.0 -= 1;
        if held.0 > 0 {
            return;
        }
        for (file, value) in held.1.drain(..) {
            if let Err(error) = fs::write(file, value.to_string()) {
                eprintln!("weft testbed: could not put {file} back to {value}: {error}");
            }
        }
    }
}

fn read_limit(file: &str) -> anyhow::Result<u64> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{file} holds {text:?}, not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_bed_of_24_needs_more_than_the_default_table() {
        assert!(entries_needed(24) > 1024);
        assert!(entries_needed(8) < 1024);
        assert_eq!(entries_needed(1), 0);
        assert_eq!(entries_needed(0), 0);
    }
}
