//! The TUN driver: creates the interface with the node's overlay addresses
//! and moves IP packets between it and the event loop.
//!
//! The interface gets the node's overlay IPv6 address with the overlay's
//! prefix length ([`weft_core::OVERLAY_PREFIX_LEN`]), so the kernel routes
//! the whole overlay prefix to it, and the certificate's IPv4 address with
//! its prefix, if there is one. The device disappears when the daemon
//! exits (it is not persistent).
//!
//! With offloads (Linux, `tun.offload`, on by default) the kernel hands
//! over TCP and UDP super-packets of up to 64 KiB, which tun-rs splits into
//! MTU-sized packets for the core, and packets written in one batch are
//! coalesced back (GRO) so the kernel sees few large ones. Either way the
//! core sees ordinary IP packets. Buffers are allocated once and reused.
//!
//! The platform is chosen here, once: Linux uses tun-rs; every other OS
//! gets a clear "unsupported" error at start.

pub(super) use platform::Tun;

#[cfg(target_os = "linux")]
mod platform {
    use std::io;
    use std::net::Ipv6Addr;

    use tracing::{debug, info};
    use tun_rs::{GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};
    use weft_core::{Ipv4Net, OVERLAY_PREFIX_LEN};

    use crate::config::TunSection;

    /// Room for the largest read: a virtio header and a 64 KiB super-packet.
    const READ_BUFFER: usize = VIRTIO_NET_HDR_LEN + 65_535;
    /// Headroom before each written packet for the virtio header.
    const WRITE_OFFSET: usize = VIRTIO_NET_HDR_LEN;
    /// Packets written (and coalesced) per batch.
    const WRITE_BATCH: usize = IDEAL_BATCH_SIZE;

    /// The node's TUN interface.
    pub(in crate::daemon) struct Tun {
        device: tun_rs::AsyncDevice,
        name: String,
        offload: bool,
        /// What one read returns: a packet, or a super-packet with its
        /// virtio header.
        read: Vec<u8>,
        /// The packets a super-packet is split into, and their sizes.
        segments: Vec<Vec<u8>>,
        sizes: Vec<usize>,
        /// Packets waiting to be written, each after `WRITE_OFFSET` bytes
        /// of headroom; the first `pending` are in use.
        batch: Vec<Vec<u8>>,
        pending: usize,
        gro: GROTable,
        write_errors: u64,
    }

    impl Tun {
        /// Creates the interface. Must be called inside the tokio runtime.
        pub(in crate::daemon) fn create(
            config: &TunSection,
            ipv6: Ipv6Addr,
            ipv4: Option<Ipv4Net>,
        ) -> anyhow::Result<Self> {
            let build = |offload: bool| {
                let mut builder = tun_rs::DeviceBuilder::new()
                    .name(config.name.clone())
                    .mtu(config.mtu)
                    .ipv6(ipv6, OVERLAY_PREFIX_LEN)
                    .offload(offload);
                if let Some(net) = ipv4 {
                    builder = builder.ipv4(net.addr, net.prefix_len, None);
                }
                builder.build_async()
            };
            let (device, offload) = match build(config.offload) {
                Ok(device) => (device, config.offload),
                // Kernels without TUN offloads refuse the flags: go on
                // without them.
                Err(e) if config.offload && e.raw_os_error() == Some(libc::EINVAL) => {
                    info!(error = %e, "TUN offloads are not available; continuing without them");
                    (build(false).map_err(|e| explain(e, &config.name))?, false)
                }
                Err(e) => return Err(explain(e, &config.name)),
            };
            let name = device.name().unwrap_or_else(|_| config.name.clone());
            let mtu = usize::from(config.mtu);
            let segment_count = if offload { 65_535 / mtu + 2 } else { 0 };
            debug!(
                offload,
                udp_gso = offload && device.udp_gso(),
                "TUN interface ready"
            );
            Ok(Self {
                device,
                name,
                offload,
                read: vec![0u8; READ_BUFFER],
                segments: vec![vec![0u8; mtu + 64]; segment_count],
                sizes: vec![0; segment_count],
                batch: (0..WRITE_BATCH)
                    .map(|_| Vec::with_capacity(WRITE_OFFSET + mtu + 64))
                    .collect(),
                pending: 0,
                gro: GROTable::new(),
                write_errors: 0,
            })
        }

        /// The interface's name as the kernel knows it.
        pub(in crate::daemon) fn name(&self) -> &str {
            &self.name
        }

        /// Write batches the kernel refused (partly), for the status counters.
        pub(in crate::daemon) fn write_errors(&self) -> u64 {
            self.write_errors
        }

        /// Waits until a packet may be waiting (cancel safe).
        pub(in crate::daemon) async fn readable(&self) -> io::Result<()> {
            self.device.readable().await
        }

        /// Reads what is waiting, about `budget` packets at most, and hands
        /// each to `handle`. Returns how many it handled.
        pub(in crate::daemon) fn receive(
            &mut self,
            budget: usize,
            mut handle: impl FnMut(&[u8]),
        ) -> io::Result<usize> {
            let mut handled = 0;
            while handled < budget {
                let result = if self.offload {
                    self.device.try_recv_multiple(
                        &mut self.read,
                        &mut self.segments,
                        &mut self.sizes,
                        0,
                    )
                } else {
                    self.device.try_recv(&mut self.read).map(|n| {
                        if n > 0 {
                            handle(&self.read[..n]);
                        }
                        usize::from(n > 0)
                    })
                };
                match result {
                    Ok(0) => break,
                    Ok(count) if self.offload => {
                        for (segment, &size) in self.segments.iter().zip(&self.sizes).take(count) {
                            handle(&segment[..size.min(segment.len())]);
                        }
                        handled += count;
                    }
                    Ok(count) => handled += count,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_fatal(&e) => return Err(e),
                    // A super-packet tun-rs cannot split: lost, like a
                    // corrupt frame on a wire.
                    Err(e) => debug!(error = %e, "dropping an unreadable TUN packet"),
                }
            }
            Ok(handled)
        }

        /// Adds a packet to the write batch, writing the batch when full.
        pub(in crate::daemon) async fn queue(&mut self, packet: &[u8]) -> io::Result<()> {
            if self.pending == self.batch.len() {
                self.flush().await?;
            }
            let buf = &mut self.batch[self.pending];
            buf.clear();
            buf.resize(WRITE_OFFSET, 0);
            buf.extend_from_slice(packet);
            self.pending += 1;
            Ok(())
        }

        /// Writes the batch (coalesced with offloads). Packets the kernel
        /// refuses are dropped and counted.
        pub(in crate::daemon) async fn flush(&mut self) -> io::Result<()> {
            if self.pending == 0 {
                return Ok(());
            }
            let batch = &mut self.batch[..self.pending];
            let result = if self.offload {
                self.device
                    .send_multiple(&mut self.gro, batch, WRITE_OFFSET)
                    .await
                    .map(|_| ())
            } else {
                let mut result = Ok(());
                for packet in batch.iter() {
                    if let Err(e) = self.device.send(&packet[WRITE_OFFSET..]).await {
                        result = Err(e);
                    }
                }
                result
            };
            self.pending = 0;
            match result {
                Ok(()) => Ok(()),
                Err(e) if is_fatal(&e) => Err(e),
                Err(e) => {
                    self.write_errors += 1;
                    debug!(error = %e, "the TUN interface refused a packet");
                    Ok(())
                }
            }
        }
    }

    /// The interface is gone: nothing more can be read or written.
    fn is_fatal(error: &io::Error) -> bool {
        matches!(
            error.raw_os_error(),
            Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::EIO)
        )
    }

    fn explain(error: io::Error, name: &str) -> anyhow::Error {
        let hint = match error.raw_os_error() {
            // Refused either opening the device (its mode, or a cgroup
            // device policy such as systemd's DevicePolicy=closed) or at
            // TUNSETIFF (no CAP_NET_ADMIN): opening it again tells which.
            Some(libc::EPERM | libc::EACCES) => &permission_hint(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(TUN_DEVICE)
                    .map(drop),
            ),
            Some(libc::EBUSY) => {
                " (an interface of that name is in use: another node, or pick another tun.name)"
            }
            Some(libc::ENOENT | libc::ENODEV) => {
                " (is the tun module loaded and /dev/net/tun present?)"
            }
            _ => "",
        };
        anyhow::Error::new(error).context(format!("cannot create TUN interface '{name}'{hint}"))
    }

    const TUN_DEVICE: &str = "/dev/net/tun";

    /// Why a TUN interface could not be made, given whether this process
    /// can open the TUN device itself.
    fn permission_hint(device_opens: io::Result<()>) -> String {
        match device_opens {
            Ok(()) => " (creating a TUN interface needs CAP_NET_ADMIN: run as root, or grant it, as the Debian package's unit does with AmbientCapabilities=CAP_NET_ADMIN)".to_owned(),
            Err(open) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(TUN_DEVICE).map_or_else(
                    |e| format!("cannot stat it: {e}"),
                    |m| format!("mode {:04o}", m.permissions().mode() & 0o7777),
                );
                format!(
                    " (this process cannot open {TUN_DEVICE}: {open}; it is {mode}, normally 0666; under systemd the unit needs DeviceAllow={TUN_DEVICE} rw)"
                )
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_device_that_opens_points_at_the_capability_one_that_does_not_at_the_device() {
            assert!(permission_hint(Ok(())).contains("CAP_NET_ADMIN"));
            let hint = permission_hint(Err(io::Error::from_raw_os_error(libc::EACCES)));
            assert!(hint.contains("cannot open /dev/net/tun"), "{hint}");
            assert!(hint.contains("DeviceAllow"), "{hint}");
            assert!(!hint.contains("CAP_NET_ADMIN"), "{hint}");
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use std::io;
    use std::net::Ipv6Addr;

    use weft_core::Ipv4Net;

    use crate::config::TunSection;

    /// Never constructed: [`Tun::create`] always fails on this OS.
    pub(in crate::daemon) enum Tun {}

    impl Tun {
        pub(in crate::daemon) fn create(
            _: &TunSection,
            _: Ipv6Addr,
            _: Option<Ipv4Net>,
        ) -> anyhow::Result<Self> {
            anyhow::bail!("weft's TUN driver supports only Linux so far; this OS is unsupported")
        }
        pub(in crate::daemon) fn name(&self) -> &str {
            match *self {}
        }
        pub(in crate::daemon) fn write_errors(&self) -> u64 {
            match *self {}
        }
        pub(in crate::daemon) async fn readable(&self) -> io::Result<()> {
            match *self {}
        }
        pub(in crate::daemon) fn receive(
            &mut self,
            _: usize,
            _: impl FnMut(&[u8]),
        ) -> io::Result<usize> {
            match *self {}
        }
        pub(in crate::daemon) async fn queue(&mut self, _: &[u8]) -> io::Result<()> {
            match *self {}
        }
        pub(in crate::daemon) async fn flush(&mut self) -> io::Result<()> {
            match *self {}
        }
    }
}
