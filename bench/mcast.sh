#!/usr/bin/env bash
# bench/mcast.sh — weft's multicast trees on a simulated 1,000-router
# transit-stub underlay (issue 5, item 4).
#
# It builds the `mcast-bench` binary of weft-sim in release mode and runs it:
# first with weft's defaults (groups of 16, 128 and 512 members, fan-out 8,
# 16 neighbours of which 4 random, tree cost = RTT^1.5), printing a table per
# group size (weft's tree against naive unicast and IP multicast: stretch,
# link stress, source fan-out, bytes, delivery, duplicates, 5 % failures)
# and a summary against the issue's targets; then, unless --quick, the
# variants for groups of 128 behind the recommendations in
# docs/BENCHMARKS.md (fan-out, neighbourhood, full mesh, convex tree cost,
# links above 150 ms RTT left out); every variant still computes its trees
# with weft's own build_tree. Last, the recovery after 5 % of the members
# crash, measured with real weft nodes in the simulator (--nodes).
#
# What it guarantees: nothing touches the network (one process, a model of
# the underlay in memory); no root needed; each model run is seconds of CPU
# on one core, each real-node run about a minute at 32 members. See docs/BENCHMARKS.md ("Multicast trees") for results and
# how to read them.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/mcast.sh [options] [-- extra mcast-bench arguments]

  --routers N   underlay routers (default 1000)
  --seeds S     underlays per group size (default 10)
  --sources K   random sources per underlay (default 4)
  --seed X      seed of the first underlay (default 1)
  --quick       the default run only, no variants and no node runs
  --nodes N     members of the real-node recovery runs (default 32; 0: skip;
                about a minute of CPU per run at 32)
  --rev REV     build from this commit (git archive into /tmp/weft-mcast-src)
                instead of the working tree, which may hold someone's
                half-done edits
  -h, --help    this text

Environment: CARGO_TARGET_DIR is honoured (default: target/ of the tree built).
Extra arguments go to every run (see mcast-bench --help).
EOF
}

ROUTERS=1000
SEEDS=10
SOURCES=4
SEED=1
QUICK=0
NODES=32
REV=""
EXTRA=()

while (($#)); do
  case "$1" in
    --routers) ROUTERS="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --sources) SOURCES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --nodes) NODES="$2"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/mcast.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[mcast] %s\n' "$*" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/sim-bench.sh
source "$REPO/bench/lib/sim-bench.sh"
build_sim_bench mcast mcast-bench "$REV"

COMMON=(--routers "$ROUTERS" --seeds "$SEEDS" --sources "$SOURCES" --seed "$SEED")

run() {
  echo "\`mcast-bench ${COMMON[*]} $* ${EXTRA[*]}\`"
  echo
  "$BIN" "${COMMON[@]}" "$@" "${EXTRA[@]}"
  echo
}

echo "# Multicast trees: weft $COMMIT, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr)"
echo
echo "## weft's defaults"
echo
run --members 16,128,512

if ((QUICK)); then
  exit 0
fi

echo "## Variants, 128 members (summary rows; every tree is weft's build_tree)"
echo
variant() {
  local label="$1"; shift
  echo "### $label"
  echo
  echo "\`mcast-bench ${COMMON[*]} --members 128 $* ${EXTRA[*]}\`"
  echo
  "$BIN" "${COMMON[@]}" --members 128 "$@" "${EXTRA[@]}" | sed -n '/^| members/,/^$/p'
}
for f in 2 3 4 16; do
  variant "fan-out $f" --fanout "$f"
done
variant "16 neighbours, none random" --neighbours 16 --random 0
variant "8 neighbours, 2 random" --neighbours 8 --random 2
variant "full mesh among the members" --full-mesh
for e in 1 2 3; do
  for f in 4 8; do
    variant "tree cost RTT^$e, fan-out $f" --cost-exponent "$e" --fanout "$f"
  done
done
variant "full mesh, tree cost RTT^2" --full-mesh --cost-exponent 2
variant "links with RTT > 150 ms left out (weft today: such links do not come up at one end)" --max-link-rtt-ms 150
for m in 16 512; do
  for e in 1 2; do
    echo "### $m members, tree cost RTT^$e"
    echo
    echo "\`mcast-bench ${COMMON[*]} --members $m --cost-exponent $e ${EXTRA[*]}\`"
    echo
    "$BIN" "${COMMON[@]}" --members "$m" --cost-exponent "$e" "${EXTRA[@]}" | sed -n '/^| members/,/^$/p'
  done
done

if ((NODES > 0)); then
  echo "## Recovery with real nodes ($NODES members, full mesh)"
  echo
  echo "Each run: $NODES weft nodes in the simulator on the underlay's delays; a stream every"
  echo "10 ms; 5 % of the members crashed at once. The model's figure for the same"
  echo "tree and crash is printed beside each cut-off member."
  echo
  run --members "$NODES" --full-mesh --node-members "$NODES" --node-runs 5
  echo "### With a 500 ms floor on the link timeout (every direct link up)"
  echo
  run --members "$NODES" --full-mesh --node-members "$NODES" --node-runs 5 --node-min-link-timeout-ms 500
fi
