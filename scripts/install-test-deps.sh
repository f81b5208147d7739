#!/usr/bin/env bash
# Installs the system packages weft's tests use, if they are missing.
# iproute2 builds the test hosts (namespaces, veth, bridges); nftables
# impairs links in the routing tests; iputils-ping pings nodes by name
# (through the daemons' DNS) in the DHT test; chromium and chromium-driver
# run the network map's headless browser test; iperf3 loads the shaped link
# (tc tbf, from iproute2) in the QoS test and demo. scripts/check-deb
# installs the Debian package (dpkg, adduser), runs the daemon as the unit's
# user (setpriv, from util-linux), checks the unit (systemd-analyze, from
# systemd; not run as PID 1) and builds the package with cargo-deb (from
# crates.io, about a minute on two cores). Idempotent.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v adduser >/dev/null 2>&1 || need+=(adduser)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root to install them)" >&2
    exit 1
  fi
  # noninteractive: iperf3's question whether to run a server at boot is
  # answered with its default (no).
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
