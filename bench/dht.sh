#!/usr/bin/env bash
# bench/dht.sh — the DHT at scale: 10,000 simulated nodes, with and without
# churn, in virtual time (issue 4, item 7).
#
# Usage: bench/dht.sh [--nodes N] [--lookups L] [--churn PERCENT] [--seed S]
#                     [-- extra dht-bench arguments]
#
# It builds the `dht-bench` binary of weft-sim in release mode and runs it
# twice with the same seed: once without churn, once with PERCENT % of the
# nodes leaving silently (and as many joining) during the lookup phase. Each
# run prints a Markdown table of the figures against the issue's targets
# (success, hops, latency against the median RTT, wall time) and the memory
# per simulated node. Nothing touches the network: the simulated nodes live
# in one process, with underlay addresses in 198.18.0.0/15 that are never
# sent to. No root needed. See docs/BENCHMARKS.md ("DHT at scale").
#
# Environment: CARGO_TARGET_DIR is honoured.

set -Eeuo pipefail

NODES=10000
LOOKUPS=2000
CHURN=20
SEED=1
EXTRA=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --lookups) LOOKUPS="$2"; shift 2 ;;
    --churn) CHURN="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench/dht.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

echo "== building dht-bench (release)" >&2
cargo build --release -p weft-sim --bin dht-bench >&2
BIN="$TARGET_DIR/release/dht-bench"

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates/weft-core crates/weft-sim 2>/dev/null; then
  COMMIT="$COMMIT (with uncommitted changes in crates/weft-core or crates/weft-sim)"
fi

echo "# DHT at scale: weft $COMMIT, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr)"
echo
for churn in 0 "$CHURN"; do
  echo "## churn $churn %"
  echo
  "$BIN" --nodes "$NODES" --lookups "$LOOKUPS" --churn "$churn" --seed "$SEED" "${EXTRA[@]}"
  echo
done
