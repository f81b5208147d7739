#!/usr/bin/env bash
# Installs the system packages weft's tests use, if they are missing.
# iproute2 builds the test hosts (namespaces, veth, bridges); nftables
# impairs links in the routing tests; iputils-ping pings nodes by name
# (through the daemons' DNS) in the DHT test; chromium and chromium-driver
# run the network map's headless browser test; iperf3 loads the shaped link
# (tc tbf, from iproute2) in the QoS test and demo. Idempotent.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
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
