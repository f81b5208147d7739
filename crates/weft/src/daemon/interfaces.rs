//! The host's own interface addresses, for the node's endpoint candidates.
//!
//! The core is told which addresses the node has and how large each
//! subnet is (`Node::set_local_addresses`): they are its LAN candidates
//! for peers behind the same NAT, and they tell it which of a peer's
//! candidates lie in its own networks. Read once at start: the core
//! asks the OS nothing.

use std::net::{IpAddr, SocketAddr};

use weft_core::LocalAddress;

/// The addresses the socket bound to `listen` can use: every interface
/// address of its family (of the address itself when bound to one),
/// without loopback and link-local ones, each with `listen`'s port.
pub(super) fn local_addresses(listen: SocketAddr) -> Vec<LocalAddress> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        tracing::debug!("cannot list the interface addresses: no LAN candidates");
        return Vec::new();
    };
    let mut out = Vec::new();
    for interface in interfaces {
        let (Some(address), Some(netmask)) = (interface.address, interface.netmask) else {
            continue;
        };
        let (ip, prefix_len) = if let (Some(a), Some(m)) =
            (address.as_sockaddr_in(), netmask.as_sockaddr_in())
        {
            (IpAddr::V4(a.ip()), u32::from(m.ip()).count_ones())
        } else if let (Some(a), Some(m)) = (address.as_sockaddr_in6(), netmask.as_sockaddr_in6()) {
            (IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones())
        } else {
            continue;
        };
        if !usable(ip, listen) {
            continue;
        }
        out.push(LocalAddress {
            endpoint: SocketAddr::new(ip, listen.port()),
            prefix_len: u8::try_from(prefix_len).unwrap_or(0),
        });
    }
    out
}

fn usable(ip: IpAddr, listen: SocketAddr) -> bool {
    if ip.is_loopback() || ip.is_ipv4() != listen.is_ipv4() {
        return false;
    }
    if !listen.ip().is_unspecified() && listen.ip() != ip {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_other_families_are_left_out() {
        let any4: SocketAddr = "0.0.0.0:4800".parse().unwrap();
        assert!(usable("192.168.1.2".parse().unwrap(), any4));
        assert!(!usable("127.0.0.1".parse().unwrap(), any4));
        assert!(!usable("169.254.1.1".parse().unwrap(), any4));
        assert!(!usable("2001:db8::1".parse().unwrap(), any4));
        let any6: SocketAddr = "[::]:4800".parse().unwrap();
        assert!(!usable("fe80::1".parse().unwrap(), any6));
        assert!(usable("2001:db8::1".parse().unwrap(), any6));
        let bound: SocketAddr = "192.168.1.2:4800".parse().unwrap();
        assert!(usable("192.168.1.2".parse().unwrap(), bound));
        assert!(!usable("192.168.1.3".parse().unwrap(), bound));
    }
}
