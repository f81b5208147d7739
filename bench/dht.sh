#!/usr/bin/env bash
# bench/dht.sh — the DHT at scale: 10,000 simulated nodes, with and without
# churn, in virtual time (issue 4, item 7).
#
# It builds the `dht-bench` binary of weft-sim in release mode and runs it
# twice with the same seed: once without churn, once with PERCENT % of the
# nodes leaving silently (and as many joining) during the lookup phase. Each
# run prints a Markdown table of the figures against the issue's targets
# (success, hops, latency against the median RTT, wall time) and the memory
# per simulated node.
#
# What it guarantees: nothing touches the network. The simulated nodes live
# in one process, with underlay addresses in 198.18.0.0/15 that are never
# sent to; no root needed; each run is bounded in simulated time (joins,
# settle, lookup phase, one lookup timeout) and so in wall time. See
# docs/BENCHMARKS.md ("DHT at scale") for results and how to read them.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/dht.sh [options] [-- extra dht-bench arguments]

  --nodes N        nodes that join before the lookups (default 10000)
  --lookups L      lookups (default 2000)
  --churn PERCENT  churn of the second run (default 20)
  --seed S         seed of both runs (default 1)
  --rev REV        build from this commit (git archive into
                   /tmp/weft-dht-src) instead of the working tree,
                   which may hold someone's half-done edits
  -h, --help       this text

Environment: CARGO_TARGET_DIR is honoured (default: target/ of the tree built).
Extra arguments go to both runs (see dht-bench --help: --k, --alpha, ...).
EOF
}

NODES=10000
LOOKUPS=2000
CHURN=20
SEED=1
REV=""
EXTRA=()

while (($#)); do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --lookups) LOOKUPS="$2"; shift 2 ;;
    --churn) CHURN="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/dht.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[dht] %s\n' "$*" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/sim-bench.sh
source "$REPO/bench/lib/sim-bench.sh"
build_sim_bench dht dht-bench "$REV"

echo "# DHT at scale: weft $COMMIT, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr)"
echo
for churn in 0 "$CHURN"; do
  echo "## churn $churn %"
  echo
  echo "\`dht-bench --nodes $NODES --lookups $LOOKUPS --churn $churn --seed $SEED ${EXTRA[*]}\`"
  echo
  "$BIN" --nodes "$NODES" --lookups "$LOOKUPS" --churn "$churn" --seed "$SEED" "${EXTRA[@]}"
  echo
done
