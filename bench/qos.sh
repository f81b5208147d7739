#!/usr/bin/env bash
# bench/qos.sh — does realtime traffic stay fast while bulk fills the link,
# and do rate caps hold? Real daemons in network namespaces on this machine.
#
# Run as root:  bench/qos.sh [--runs N]
#
# It builds weft in release mode and runs `weft demo --scenario qos --nodes 3`
# N times. Each run: h0's underlay egress becomes a 20 Mbit/s bottleneck
# (tc tbf, 100 ms of queue); a realtime stream (one EF-marked 160-byte UDP
# datagram every 20 ms, echoed by h1) is timed for 5 s on the idle link and
# for 10 s while iperf3 pushes TCP from h0 to h1; first with QoS off (no
# [qos]), then with [qos] uplink = "19mbit" on both nodes; then a class capped
# at 5 Mbit/s is offered 10 Mbit/s of UDP for 10 s, and so is h2, which h0
# limits to 4 Mbit/s ([[qos.peers]]), 8 Mbit/s. The demo prints the
# before/after table (realtime p50/p99/max RTT and loss, bulk throughput,
# the capped class's rate) and h0's `weft qos`; this script adds the
# versions measured.
#
# Targets (issue 6): realtime p99 under load at most idle p99 + 5 ms with no
# loss; bulk at least 90 % of the remaining capacity; the cap within 5 % over
# 10 s. Rates in weft are underlay rates (sealed datagram + IP + UDP
# headers); the demo converts iperf3's payload rates.
#
# What it guarantees: all traffic stays in namespaces the demo creates
# (underlay 198.18.0.0/24, overlay 198.19.0.0/16) and the demo removes them,
# its daemons, iperf3 processes and files on every exit path (also Ctrl-C);
# every wait has a deadline. See docs/BENCHMARKS.md for results.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/qos.sh [options]   (as root)

  --runs N            repeat the whole experiment N times (default 3)
  --weft-bin PATH     use this weft binary instead of building one
  --rev REV           build weft from this commit (git archive into
                      /tmp/weft-qos-src) instead of the working tree,
                      which may hold someone's half-done edits
  --skip-install      do not apt-get anything (iperf3 is needed)
  --out FILE          also write the demo's output to FILE
  -h, --help          this text

Environment: CARGO_TARGET_DIR is honoured when building weft (release).
EOF
}

RUNS=3
WEFT_BIN=""
REV=""
SKIP_INSTALL=0
OUT=""

while (($#)); do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --weft-bin) WEFT_BIN="$2"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[qos] %s\n' "$*" >&2; }
die() { printf '[qos] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (the demo makes network namespaces and TUN devices)"
[[ "$RUNS" =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 100)) || die "--runs: 1 to 100"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

if ! command -v iperf3 >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
  ((SKIP_INSTALL)) && die "iperf3 and tc are needed (scripts/install-test-deps.sh)"
  log "installing iperf3 and iproute2"
  "$REPO/scripts/install-test-deps.sh"
fi

# shellcheck source=lib/weft-bin.sh
source "$REPO/bench/lib/weft-bin.sh"
weft_bin qos
VERSION="$WEFT_VERSION"

[[ -n "$OUT" ]] && : >"$OUT"
STATUS=0
for ((run = 1; run <= RUNS; run++)); do
  log "run $run of $RUNS: $WEFT_BIN demo --scenario qos --nodes 3"
  if [[ -n "$OUT" ]]; then
    echo "=== run $run of $RUNS" >>"$OUT"
    "$WEFT_BIN" demo --scenario qos --nodes 3 | tee -a "$OUT" || STATUS=$?
  else
    "$WEFT_BIN" demo --scenario qos --nodes 3 || STATUS=$?
  fi
done
echo
echo "measured: $VERSION; $(iperf3 --version | head -1); $(uname -sr); $(nproc) cores; $(date -u +%Y-%m-%d)."
exit "$STATUS"
