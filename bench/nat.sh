#!/usr/bin/env bash
# bench/nat.sh — NAT traversal between whole weft nodes, in the simulator.
#
# Builds weft-sim's `nat-bench` in release mode (from the working tree, or
# from --rev) and runs it: for each pair of NAT routers (endpoint-independent
# on both sides, one router for both, symmetric against endpoint-independent,
# symmetric on both sides), two members behind them and a public member they
# both reach, with a 10 ms flow from one to the other. Prints how the pair
# ends up, when the direct path took over, packets lost on the relay→direct
# switch and after a router forgets its mappings, and the cost of an idle
# punched link. Results and the command are in docs/BENCHMARKS.md ("NAT
# traversal").
#
# Nothing touches the network: the nodes and routers live in one process.

set -Eeuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/sim-bench.sh
source bench/lib/sim-bench.sh

rev=""
seed=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rev) rev="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help)
      echo "Usage: bench/nat.sh [--rev REV] [--seed N]" >&2
      exit 0 ;;
    *) echo "bench/nat.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

build_sim_bench nat nat-bench "$rev"
echo "NAT traversal, simulated whole nodes: commit $COMMIT, seed $seed, 10 ms flow a→b"
echo
"$BIN" --seed "$seed"
