//! The TUN driver: creates the interface with the node's overlay addresses
//! and moves IP packets between it and the event loop.
//!
//! The interface gets the node's overlay IPv6 address with the overlay's
//! prefix length ([`weft_core::OVERLAY_PREFIX_LEN`]), so the kernel routes
//! the whole overlay prefix to it, and the certificate's IPv4 address with
//! its prefix, if there is one. The device disappears when the daemon
//! exits (it is not persistent).
//!
//! The platform is chosen here, once: Linux uses tun-rs; every other OS
//! gets a clear "unsupported" error at start.

use std::io;
use std::net::Ipv6Addr;

use weft_core::Ipv4Net;

use crate::config::TunSection;

/// Room for the largest packet the interface may hand us.
const PACKET_BUFFER: usize = 65_536;

/// The node's TUN interface.
pub(super) struct Tun {
    device: platform::Device,
    /// Reused for every packet read.
    buf: Vec<u8>,
    name: String,
    /// Write errors, for the status counters.
    pub(super) write_errors: u64,
}

impl Tun {
    /// Creates the interface. Must be called inside the tokio runtime.
    pub(super) fn create(
        config: &TunSection,
        ipv6: Ipv6Addr,
        ipv4: Option<Ipv4Net>,
    ) -> anyhow::Result<Self> {
        let (device, name) = platform::create(config, ipv6, ipv4)?;
        Ok(Self {
            device,
            buf: vec![0u8; PACKET_BUFFER],
            name,
            write_errors: 0,
        })
    }

    /// The interface's name as the kernel knows it.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a packet may be waiting (cancel safe).
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.device.readable().await
    }

    /// Reads what is waiting, at most `budget` packets, and hands each to
    /// `handle`. Returns how many it read; fewer than `budget` means the
    /// interface is drained.
    pub(super) fn receive(
        &mut self,
        budget: usize,
        mut handle: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let mut handled = 0;
        while handled < budget {
            match self.device.try_recv(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    handle(&self.buf[..n]);
                    handled += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(handled)
    }

    /// Writes one packet to the interface, waiting if it is full. A packet
    /// the kernel refuses is dropped and counted.
    pub(super) async fn write(&mut self, packet: &[u8]) -> io::Result<()> {
        match self.device.send(packet).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADFD | libc::EBADF | libc::ENODEV)
                ) =>
            {
                Err(e)
            }
            Err(e) => {
                self.write_errors += 1;
                tracing::debug!(error = %e, "the TUN interface refused a packet");
                Ok(())
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use std::io;
    use std::net::Ipv6Addr;

    use weft_core::{Ipv4Net, OVERLAY_PREFIX_LEN};

    use crate::config::TunSection;

    pub(super) type Device = tun_rs::AsyncDevice;

    pub(super) fn create(
        config: &TunSection,
        ipv6: Ipv6Addr,
        ipv4: Option<Ipv4Net>,
    ) -> anyhow::Result<(Device, String)> {
        let mut builder = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .ipv6(ipv6, OVERLAY_PREFIX_LEN);
        if let Some(net) = ipv4 {
            builder = builder.ipv4(net.addr, net.prefix_len, None);
        }
        let device = builder
            .build_async()
            .map_err(|e| explain(e, &config.name))?;
        let name = device.name().unwrap_or_else(|_| config.name.clone());
        Ok((device, name))
    }

    fn explain(error: io::Error, name: &str) -> anyhow::Error {
        let hint = match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                " (creating a TUN interface needs root or CAP_NET_ADMIN)"
            }
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
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use std::io;
    use std::net::Ipv6Addr;

    use weft_core::Ipv4Net;

    use crate::config::TunSection;

    /// Never constructed: [`create`] always fails.
    pub(super) enum Device {}

    impl Device {
        pub(super) async fn readable(&self) -> io::Result<()> {
            match *self {}
        }
        pub(super) fn try_recv(&self, _: &mut [u8]) -> io::Result<usize> {
            match *self {}
        }
        pub(super) async fn send(&self, _: &[u8]) -> io::Result<usize> {
            match *self {}
        }
    }

    pub(super) fn create(
        _: &TunSection,
        _: Ipv6Addr,
        _: Option<Ipv4Net>,
    ) -> anyhow::Result<(Device, String)> {
        anyhow::bail!("weft's TUN driver supports only Linux so far; this OS is unsupported")
    }
}
