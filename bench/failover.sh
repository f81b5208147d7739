#!/usr/bin/env bash
# bench/failover.sh — how fast weft routes around a cut link, what it loses,
# and what its link monitoring costs when idle, on real daemons in network
# namespaces on this machine.
#
# Run as root:  bench/failover.sh [--trials N] [--nodes N] [--loss-percent P]
#
# It builds weft in release mode and runs
#   weft demo --scenario failover --trials N --idle-secs S
#   weft demo --scenario failover --trials 0 --loss-percent P
# each of which brings up N nodes (one network namespace each, a full mesh on one
# bridge), measures the idle probe cost from the daemons' counters, then
# N times: h0 pings h1 every 10 ms, the h0–h1 underlay path is cut with
# blackhole routes, the outage is measured (last reply before the cut to the
# first reply after), the path is restored and the route must return to
# direct. The second run (nftables needed; installed here unless
# --skip-install) adds P % random loss on h0–h1 for 10 s on a fresh overlay
# and reports the end-to-end loss. The demo prints a per-trial table and a summary table
# against the targets of issue 3; this script adds the versions measured.
#
# What it guarantees: all traffic stays in namespaces the demo creates
# (underlay 198.18.0.0/24, overlay 198.19.0.0/16) and the demo removes them,
# its daemons and files on every exit path (also Ctrl-C); every wait has a
# deadline. See docs/BENCHMARKS.md for results and how to read them.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/failover.sh [options]   (as root)

  --trials N          cut/restore cycles (default 20)
  --nodes N           overlay nodes, at least 3 (default 4)
  --loss-percent P    random-loss phase on h0-h1 (default 30; 0 skips it)
  --idle-secs S       idle window for the probe cost (default 30)
  --weft-bin PATH     use this weft binary instead of building one
  --rev REV           build weft from this commit (git archive into
                      /tmp/weft-failover-src) instead of the working tree,
                      which may hold someone's half-done edits
  --skip-install      do not apt-get anything (the loss phase needs nft)
  --out FILE          also write the demo's output to FILE
  -h, --help          this text

Environment: CARGO_TARGET_DIR is honoured when building weft (release).
EOF
}

TRIALS=20
NODES=4
LOSS=30
IDLE=30
WEFT_BIN=""
REV=""
SKIP_INSTALL=0
OUT=""

while (($#)); do
  case "$1" in
    --trials) TRIALS="$2"; shift 2 ;;
    --nodes) NODES="$2"; shift 2 ;;
    --loss-percent) LOSS="$2"; shift 2 ;;
    --idle-secs) IDLE="$2"; shift 2 ;;
    --weft-bin) WEFT_BIN="$2"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[failover] %s\n' "$*" >&2; }
die() { printf '[failover] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (the demo makes network namespaces and TUN devices)"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

if ((LOSS > 0)) && ! command -v nft >/dev/null 2>&1; then
  if ((SKIP_INSTALL)); then
    log "nft is not installed: the loss phase will be skipped"
  else
    log "installing nftables for the loss phase"
    "$REPO/scripts/install-test-deps.sh"
  fi
fi

# shellcheck source=lib/weft-bin.sh
source "$REPO/bench/lib/weft-bin.sh"
weft_bin failover
VERSION="$WEFT_VERSION"

# Two overlays, so that neither measurement depends on how the other ended:
# the cut trials (and the idle probe cost) first, then the loss phase.
run_demo() {
  log "$WEFT_BIN $*"
  if [[ -n "$OUT" ]]; then
    "$WEFT_BIN" "$@" | tee -a "$OUT"
  else
    "$WEFT_BIN" "$@"
  fi
}
[[ -n "$OUT" ]] && : >"$OUT"
STATUS=0
run_demo demo --scenario failover --nodes "$NODES" --trials "$TRIALS" --idle-secs "$IDLE" || STATUS=$?
if ((LOSS > 0)); then
  run_demo demo --scenario failover --nodes "$NODES" --trials 0 --loss-percent "$LOSS" --idle-secs 5 || STATUS=$?
fi
echo
echo "measured: $VERSION; $(uname -sr); $(nproc) cores; $(date -u +%Y-%m-%d)."
exit "$STATUS"
