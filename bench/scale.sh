#!/usr/bin/env bash
# bench/scale.sh — whole weft nodes at scale, in the simulator.
#
# Builds weft-sim's `scale-bench` in release mode (from the working tree, or
# from --rev) and runs it for each N given: N complete `weft_core::Node`s
# (sessions, link monitors, routing, DHT, multicast and QoS all on, default
# [neighbours]), each bootstrapping from one earlier node, left to settle,
# then measured at idle (every datagram each node sends and receives, and
# the sessions it holds), then reached by random pairs with sessions on
# demand. One Markdown table row per N. Results and the command that made
# them are in docs/BENCHMARKS.md ("Whole nodes at scale").
#
# Nothing touches the network: the nodes live in one process, with underlay
# addresses in 198.18.0.0/15 that are never sent to; no root needed; each
# run is bounded in simulated time (joins, settle, window, 10 s of pairs).

set -Eeuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/sim-bench.sh
source bench/lib/sim-bench.sh

rev=""
settle=360
sizes=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rev) rev="$2"; shift 2 ;;
    --settle) settle="$2"; shift 2 ;;
    -h|--help)
      echo "Usage: bench/scale.sh [--rev REV] [--settle SECONDS] N..." >&2
      exit 0 ;;
    *) sizes+=("$1"); shift ;;
  esac
done
[[ ${#sizes[@]} -gt 0 ]] || sizes=(50 100 200)

build_sim_bench scale scale-bench "$rev"
echo "Whole nodes at scale: commit $COMMIT, settle ${settle}s, window 60 s, 100 pairs"
echo
header=--header
for n in "${sizes[@]}"; do
  "$BIN" --nodes "$n" --settle "$settle" $header
  header=
done
