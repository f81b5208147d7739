//! The kernel's side of multicast on the TUN: what Linux needs so that
//! unmodified applications' multicast goes through weft and comes back out.
//!
//! Found by trying it on Linux 6.x (and it is what `netns_mcast` checks):
//!
//! - **Receiving needs nothing extra.** A TUN device is created with
//!   `IFF_MULTICAST` (the kernel's `tun_net_init` sets it for layer-3 TUNs;
//!   it is set again here in case something cleared it). A socket that joins
//!   a group on the TUN (`IP_ADD_MEMBERSHIP` with the TUN's address, or
//!   `IPV6_JOIN_GROUP` with its index) adds the group to the device's
//!   multicast list, and packets the node writes to the TUN addressed to it
//!   are delivered to that socket with their original source. Reverse-path
//!   filtering passes even in strict mode (`rp_filter = 1`), because the
//!   sources are overlay addresses, which the kernel routes to the TUN
//!   itself; `accept_local` (set by the daemon for ICMP errors) is not
//!   needed, since a node never writes its own packets back.
//! - **Joins become reports on the TUN by themselves.** On a join the
//!   kernel sends an unsolicited IGMPv3 report to 224.0.0.22 (IPv4) or an
//!   MLDv2 report to ff02::16 (IPv6, behind a hop-by-hop header with the
//!   router alert), twice (robustness 2), and the same on leave and when a
//!   socket that joined closes. The core reads these from the TUN (see
//!   `weft_core::mcast::parse_reports`). IGMP stays on the kernel's default
//!   version (v3, falling back to v2 only when it hears a v2 querier, which
//!   never exists on the TUN); the core understands both.
//! - **Sending needs routes.** A socket that sends to a group without
//!   choosing an interface (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`) gets
//!   the interface from a route lookup of the group. IPv4: without a route
//!   to 224.0.0.0/4 the send fails (`ENETUNREACH`) or leaves by the default
//!   route's interface, so the TUN gets `224.0.0.0/4`. IPv6: every
//!   multicast-capable interface has `multicast ff00::/8` in table `local`
//!   (looked up before `main`), and the first one wins, so the TUN gets more
//!   specific routes in table `local`, for scopes 3 to 15 with each valid
//!   flags value (0, 1, 3 and 7, RFC 4291 and 3956): `ffF3::/16`
//!   (scope 3), `ffF4::/14` (4 to 7) and `ffF8::/13` (8 to 15). Link-local
//!   multicast (224.0.0.0/24 is inside 224.0.0.0/4, but it is sent on the
//!   interface the application names; ff01::/16 and ff02::/16) is left to
//!   the other interfaces. The routes vanish with the TUN device when the
//!   daemon stops. `[multicast] routes = false` leaves routing to the
//!   operator: applications then have to name the TUN when they send.
//!
//! Routes and the flag are set with `ip` (iproute2) in one batch, as the
//! project prefers to a second netlink stack beside tun-rs's. Best effort:
//! every failure is logged with what it means, and the node runs on (it
//! still delivers multicast to local sockets and forwards it; only
//! applications that rely on the default route cannot send).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info, warn};

/// Longest `ip` may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags values of valid IPv6 multicast addresses (0RPT: T alone, P
/// needs T, R needs P).
const IPV6_FLAGS: [u16; 4] = [0x0, 0x1, 0x3, 0x7];

/// Prepares TUN `tun` for multicast: the multicast flag and, with `routes`,
/// the routes that send applications' multicast into it. See the module
/// doc. Call after the device is up.
pub(super) async fn prepare(tun: &str, routes: bool) {
    let batch = batch(tun, routes);
    match run_ip_batch(&batch).await {
        Ok(()) => {
            if routes {
                info!(
                    tun,
                    "multicast routed into the TUN: 224.0.0.0/4 and IPv6 scopes 3 to 15"
                );
            } else {
                debug!(
                    tun,
                    "multicast flag set; no multicast routes (multicast.routes = false)"
                );
            }
        }
        Err(problem) => warn!(
            tun,
            %problem,
            "cannot prepare the TUN for multicast fully: applications that send to groups without choosing the interface may not reach the overlay (joins and delivery still work)"
        ),
    }
}

/// The `ip -batch` lines for `tun`.
fn batch(tun: &str, routes: bool) -> String {
    let mut lines = format!("link set dev {tun} multicast on\n");
    if !routes {
        return lines;
    }
    lines.push_str(&format!("route add 224.0.0.0/4 dev {tun}\n"));
    for flags in IPV6_FLAGS {
        for (scope, len) in [(0x3, 16), (0x4, 14), (0x8, 13)] {
            let prefix = 0xff00 | (flags << 4) | scope;
            lines.push_str(&format!(
                "route add multicast {prefix:x}::/{len} dev {tun} table local\n"
            ));
        }
    }
    lines
}

/// Runs `ip -force -batch -` with `lines` on its standard input (every line
/// is tried; the failures are reported together).
async fn run_ip_batch(lines: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as ip's failure below; dropping stdin
        // ends ip's input.
        let _ = stdin.write_all(lines.as_bytes()).await;
    }
    let output = match tokio::time::timeout(IP_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("cannot wait for ip: {e}")),
        Err(_) => return Err(format!("ip did not finish within {IP_TIMEOUT:?}")),
    };
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip -batch: {} ({})",
        String::from_utf8_lossy(&output.stderr)
            .trim()
            .replace('\n', "; "),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_scopes_three_and_up_for_every_valid_flags_value() {
        let text = batch("weft0", true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "link set dev weft0 multicast on");
        assert_eq!(lines[1], "route add 224.0.0.0/4 dev weft0");
        assert_eq!(lines.len(), 2 + 12);
        assert!(lines.contains(&"route add multicast ff03::/16 dev weft0 table local"));
        assert!(lines.contains(&"route add multicast ff04::/14 dev weft0 table local"));
        assert!(lines.contains(&"route add multicast ff08::/13 dev weft0 table local"));
        assert!(lines.contains(&"route add multicast ff78::/13 dev weft0 table local"));
        assert!(lines.contains(&"route add multicast ff13::/16 dev weft0 table local"));
        // Every carried scope of a valid flags value is covered, nothing
        // link-local is.
        let prefixes: Vec<(u16, u32)> = lines[2..]
            .iter()
            .map(|line| {
                let prefix = line.split_whitespace().nth(3).unwrap();
                let (address, len) = prefix.split_once("::/").unwrap();
                (
                    u16::from_str_radix(address, 16).unwrap(),
                    len.parse().unwrap(),
                )
            })
            .collect();
        let covered = |first: u16| {
            prefixes
                .iter()
                .any(|&(p, len)| (first ^ p) & (u16::MAX << (16 - len)) == 0)
        };
        for flags in IPV6_FLAGS {
            for scope in 0..16u16 {
                let first = 0xff00 | (flags << 4) | scope;
                assert_eq!(covered(first), scope >= 3, "{first:x}");
            }
        }
        assert_eq!(batch("weft0", false), "link set dev weft0 multicast on\n");
    }
}
