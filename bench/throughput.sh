#!/usr/bin/env bash
# bench/throughput.sh — TCP throughput and ping RTT through weft, compared
# with the raw underlay and with two userspace WireGuard implementations
# (wireguard-go and boringtun), all on the same pair of network namespaces in
# one run, so that the ratios to the raw underlay are comparable even on a
# noisy machine.
#
# Run as root:  bench/throughput.sh [--duration N] [--only raw,weft,...]
#
# What it guarantees:
# - all traffic stays inside two network namespaces it creates itself
#   (underlay 198.18.0.1/24 <-> 198.18.0.2/24 on a veth pair; overlays
#   198.19.0.0/24 weft, 198.19.1.0/24 wireguard-go, 198.19.2.0/24 boringtun);
# - only one tunnel runs at a time, each with its own TUN names and port
#   (weft is measured twice: as configured by `weft init`, and with
#   tun.offload = false, to show what the TUN offloads bring);
# - an EXIT trap (also on error, Ctrl-C, SIGTERM) kills every process it
#   started, by PID, and deletes its namespaces;
# - every wait has a deadline and every load is bounded (iperf3 -t, ping -c).
#
# See docs/BENCHMARKS.md for results and how to read them.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/throughput.sh [options]   (as root)

  --duration N        seconds per iperf3 test (default 10)
  --parallel N        streams in the parallel iperf3 test (default 4; 0 skips it)
  --no-reverse        skip the reverse (-R, server->client) iperf3 test
  --pings N           pings per path (default 200)
  --ping-interval S   seconds between pings (default 0.01)
  --only LIST         comma-separated subset of:
                      raw,weft,weft-no-offload,wireguard-go,boringtun
                      (weft-no-offload: weft with tun.offload = false)
                      (raw is always measured: it is the baseline of the ratios)
  --mtu N             force this tunnel MTU on every tunnel (default: each
                      tool's own default: weft's config default, 1420 for WireGuard)
  --boringtun-threads N   boringtun worker threads (default: its own default, 4)
  --weft-bin PATH     use this weft binary instead of building one
  --weft-append FILE  append this TOML to both weft configs (e.g. a
                      [firewall] section, to measure its cost)
  --rev REV           build weft from this commit (git archive into
                      /tmp/weft-bench-src) instead of the working tree, which
                      may hold someone's half-done edits
  --skip-install      do not apt-get / cargo install anything
  --out FILE          also write the Markdown table to FILE
  --keep              keep the work directory (configs, logs, iperf3 JSON)
  -h, --help          this text

Environment: CARGO_TARGET_DIR is honoured when building weft (release).
EOF
}

# ---------------------------------------------------------------- options ---
DURATION=10
PARALLEL=4
REVERSE=1
PINGS=200
PING_INTERVAL=0.01
ONLY="raw,weft,weft-no-offload,wireguard-go,boringtun"
MTU=""
BT_THREADS=""
WEFT_BIN=""
WEFT_APPEND=""
REV=""
SKIP_INSTALL=0
OUT=""
KEEP=0

while (($#)); do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --parallel) PARALLEL="$2"; shift 2 ;;
    --no-reverse) REVERSE=0; shift ;;
    --pings) PINGS="$2"; shift 2 ;;
    --ping-interval) PING_INTERVAL="$2"; shift 2 ;;
    --only) ONLY="raw,$2"; shift 2 ;;
    --mtu) MTU="$2"; shift 2 ;;
    --boringtun-threads) BT_THREADS="$2"; shift 2 ;;
    --weft-bin) WEFT_BIN="$2"; shift 2 ;;
    --weft-append) WEFT_APPEND="$(realpath "$2")"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "throughput.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }

is_int "$DURATION" && ((DURATION >= 1 && DURATION <= 600)) || die "--duration must be 1..600"
is_int "$PARALLEL" && ((PARALLEL <= 64)) || die "--parallel must be 0..64"
is_int "$PINGS" && ((PINGS >= 1 && PINGS <= 10000)) || die "--pings must be 1..10000"
[[ "$PING_INTERVAL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--ping-interval must be a number of seconds"
[[ -z "$MTU" ]] || { is_int "$MTU" && ((MTU >= 1280 && MTU <= 1440)); } || die "--mtu must be 1280..1440"
[[ -z "$BT_THREADS" ]] || is_int "$BT_THREADS" || die "--boringtun-threads must be a number"
for t in ${ONLY//,/ }; do
  case "$t" in raw|weft|weft-no-offload|wireguard-go|boringtun) ;; *) die "--only: unknown path '$t'" ;; esac
done
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

((EUID == 0)) || die "must run as root (namespaces, TUN devices)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

# ---------------------------------------------------------------- install ---
install_deps() {
  local -a missing=()
  command -v iperf3 >/dev/null || missing+=(iperf3)
  command -v ping >/dev/null || missing+=(iputils-ping)
  command -v jq >/dev/null || missing+=(jq)
  command -v ss >/dev/null || missing+=(iproute2)
  if wanted wireguard-go || wanted boringtun; then
    command -v wg >/dev/null || missing+=(wireguard-tools)
  fi
  if wanted wireguard-go; then
    command -v wireguard-go >/dev/null || missing+=(wireguard-go)
  fi
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
  fi
  if wanted boringtun && ! command -v boringtun-cli >/dev/null; then
    log "cargo install boringtun-cli --locked (a few minutes)"
    cargo install boringtun-cli --locked
  fi
}
if ((SKIP_INSTALL == 0)); then install_deps; fi
for c in ip iperf3 ping jq ss timeout; do command -v "$c" >/dev/null || die "missing $c"; done

# shellcheck source=lib/weft-bin.sh
source "$REPO/bench/lib/weft-bin.sh"
if wanted weft || wanted weft-no-offload; then
  weft_bin bench
fi

# Versions, taken when the binaries are built (others may commit meanwhile).
VERSIONS=""
if wanted weft || wanted weft-no-offload; then VERSIONS+="$WEFT_VERSION; "; fi
if wanted wireguard-go; then VERSIONS+="$(wireguard-go --version 2>/dev/null | head -n 1); "; fi
if wanted boringtun; then VERSIONS+="$(boringtun-cli --version 2>/dev/null | head -n 1) (threads ${BT_THREADS:-default}); "; fi
VERSIONS+="$(iperf3 --version | head -n 1 | cut -d' ' -f1-2)."

# ------------------------------------------------------- state and cleanup ---
ID=$$
# fd 3: the script's own stderr, for the EXIT trap, which may fire while a
# command's stderr is redirected to a log file.
exec 3>&2
NS_A="weftbench-a-$ID"
NS_B="weftbench-b-$ID"
WORK="$(mktemp -d "/tmp/weft-bench.$ID.XXXX")"
PIDS=()          # every background process we started, killed by PID on exit
WG_SOCKS=()      # userspace WireGuard UAPI sockets (global path) to remove
FAILED=0

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() { # forget_pid PID: drop it from PIDS once stopped
  local -a keep=()
  local p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  for p in "${WG_SOCKS[@]}"; do rm -f "$p"; done
  if ((KEEP)) || ((rc != 0)) || ((FAILED)); then
    echo "work directory kept: $WORK" >&3
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s
wait_for() {
  local secs="$1" what="$2" i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "timed out after ${secs}s waiting for $what"
  return 1
}

# ---------------------------------------------------------------- network ---
log "namespaces $NS_A, $NS_B; work dir $WORK"
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "wbu${ID}a" netns "$NS_A" type veth peer name "wbu${ID}b" netns "$NS_B"
ip -n "$NS_A" link set lo up
ip -n "$NS_B" link set lo up
ip -n "$NS_A" addr add 198.18.0.1/24 dev "wbu${ID}a"
ip -n "$NS_B" addr add 198.18.0.2/24 dev "wbu${ID}b"
ip -n "$NS_A" link set "wbu${ID}a" up
ip -n "$NS_B" link set "wbu${ID}b" up
wait_for 10 "underlay" in_a ping -c 1 -W 1 198.18.0.2
UNDERLAY_MTU="$(ip -n "$NS_A" -o link show "wbu${ID}a" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"

# ----------------------------------------------------------- measurements ---
# Results, keyed "<path>.<metric>".
declare -A R=()

# proc_cpu_ticks PID...: utime+stime of these processes (all threads), in ticks
proc_cpu_ticks() {
  local total=0 p f
  local -a a
  for p in "$@"; do
    f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    f="${f##*) }" # fields after "(comm) "; utime, stime are then fields 12, 13
    read -r -a a <<<"$f"
    total=$((total + a[11] + a[12]))
  done
  echo "$total"
}

# run_iperf PATH KEY SERVER_IP [iperf3 client args...]: one bounded test
run_iperf() {
  local path="$1" key="$2" ip="$3"
  shift 3
  local json="$WORK/$path.$key.json" server_pid rc=0
  in_b timeout $((DURATION + 30)) iperf3 -s -1 -p 5201 -B "$ip" >"$WORK/$path.$key.server.log" 2>&1 &
  server_pid=$!
  PIDS+=("$server_pid")
  if ! wait_for 10 "iperf3 server on $ip" \
    sh -c "ip netns exec '$NS_B' ss -Hltn 'sport = :5201' | grep -q ." ; then
    stop_pid "$server_pid"; forget_pid "$server_pid"
    R["$path.$key"]="fail"; FAILED=1; return 0
  fi
  local t0 t1 c0 c1
  t0="$(date +%s.%N)"
  c0="$(proc_cpu_ticks "${TUNNEL_PIDS[@]}")"
  in_a timeout $((DURATION + 20)) iperf3 -c "$ip" -p 5201 -t "$DURATION" -J \
    --connect-timeout 5000 "$@" >"$json" 2>"$WORK/$path.$key.client.err" || rc=$?
  c1="$(proc_cpu_ticks "${TUNNEL_PIDS[@]}")"
  t1="$(date +%s.%N)"
  stop_pid "$server_pid"; forget_pid "$server_pid"
  local bps err
  err="$(jq -r '.error // empty' "$json" 2>/dev/null || true)"
  bps="$(jq -r '.end.sum_received.bits_per_second // empty' "$json" 2>/dev/null || true)"
  if ((rc != 0)) || [[ -n "$err" || -z "$bps" ]]; then
    log "$path $key: iperf3 failed (exit $rc): ${err:-$(head -c 300 "$WORK/$path.$key.client.err")}"
    R["$path.$key"]="fail"; FAILED=1; return 0
  fi
  R["$path.$key"]="$(awk -v b="$bps" 'BEGIN { printf "%.3f", b / 1e9 }')"
  R["$path.$key.retr"]="$(jq -r '.end.sum_sent.retransmits // 0' "$json")"
  if ((${#TUNNEL_PIDS[@]})); then
    R["$path.$key.cpu"]="$(awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v a="$t0" -v b="$t1" \
      'BEGIN { printf "%.0f", 100 * c / hz / (b - a) }')"
  fi
  log "$path $key: ${R[$path.$key]} Gbit/s, retransmits ${R[$path.$key.retr]}, tunnel CPU ${R[$path.$key.cpu]:-n/a}%"
}

# run_ping PATH IP: RTT avg, p50, p99, max (ms) and loss over $PINGS pings
run_ping() {
  local path="$1" ip="$2" out="$WORK/$path.ping.txt"
  in_a timeout $((PINGS + 30)) ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "$ip" >"$out" 2>&1 || true
  local stats
  stats="$(awk -v n="$PINGS" '
    / time=/ { for (i = 1; i <= NF; i++) if ($i ~ /^time=/) { t[++k] = substr($i, 6) + 0 } }
    END {
      if (k == 0) { print "fail fail fail fail 100"; exit }
      # insertion sort: k is small (bounded by --pings)
      for (i = 2; i <= k; i++) { v = t[i]; j = i - 1; while (j > 0 && t[j] > v) { t[j + 1] = t[j]; j-- } t[j + 1] = v }
      s = 0; for (i = 1; i <= k; i++) s += t[i]
      p50 = t[int((k - 1) * 0.50) + 1]; p99 = t[int((k - 1) * 0.99 + 0.5) + 1]
      printf "%.3f %.3f %.3f %.3f %.1f\n", s / k, p50, p99, t[k], 100 * (n - k) / n
    }' "$out")"
  read -r R["$path.rtt_avg"] R["$path.rtt_p50"] R["$path.rtt_p99"] R["$path.rtt_max"] R["$path.loss"] <<<"$stats"
  [[ "${R[$path.rtt_avg]}" != fail ]] || FAILED=1
  log "$path ping: avg ${R[$path.rtt_avg]} p50 ${R[$path.rtt_p50]} p99 ${R[$path.rtt_p99]} max ${R[$path.rtt_max]} ms, loss ${R[$path.loss]}%"
}

# measure PATH IP: the whole set of tests against IP (in namespace B)
measure() {
  local path="$1" ip="$2"
  run_ping "$path" "$ip"
  run_iperf "$path" fwd "$ip"
  if ((REVERSE)); then run_iperf "$path" rev "$ip" -R; fi
  if ((PARALLEL > 0)); then run_iperf "$path" par "$ip" -P "$PARALLEL"; fi
}

# tunnel_mtu PATH IFACE: record the MTU the tunnel interface has in A
tunnel_mtu() {
  R["$1.mtu"]="$(ip -n "$NS_A" -o link show "$2" 2>/dev/null | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
}

TUNNEL_PIDS=()
start_in() { # start_in NS LOGFILE CMD...: background process in NS, PID recorded
  local ns="$1" logf="$2"
  shift 2
  ip netns exec "$ns" "$@" >"$logf" 2>&1 &
  PIDS+=("$!")
  TUNNEL_PIDS+=("$!")
}
stop_tunnel() {
  local p
  for p in "${TUNNEL_PIDS[@]}"; do stop_pid "$p"; forget_pid "$p"; done
  TUNNEL_PIDS=()
}
mark_down() { # mark_down PATH REASON: the tunnel never carried a ping
  log "$1: DOWN: $2"
  R["$1.down"]="$2"
  FAILED=1
}

# ------------------------------------------------------------------ raw -----
log "== raw underlay (veth, MTU $UNDERLAY_MTU)"
R[raw.mtu]="$UNDERLAY_MTU"
measure raw 198.18.0.2

# ------------------------------------------------------------------ weft ----
# bench_weft PATH OFFLOAD: two weft daemons, tun.offload = OFFLOAD (true, false,
# or "" to keep the default that `weft init` writes).
bench_weft() {
  local path="$1" offload="$2" d="$WORK/$1" n tun
  if [[ "$path" == weft ]]; then tun="wf$ID"; else tun="wn$ID"; fi
  mkdir -p "$d/ca" "$d/a" "$d/b"
  if ! { "$WEFT_BIN" ca init --dir "$d/ca" --name bench &&
    "$WEFT_BIN" init --dir "$d/a" && cp "$d/ca/ca.crt" "$d/a/ca.crt" &&
    "$WEFT_BIN" init --dir "$d/b" && cp "$d/ca/ca.crt" "$d/b/ca.crt" &&
    "$WEFT_BIN" ca sign --ca-key "$d/ca/ca.key" --public-key "$d/a/node.pub" --name a \
      --ipv4 198.19.0.1/24 --out "$d/a/node.crt" &&
    "$WEFT_BIN" ca sign --ca-key "$d/ca/ca.key" --public-key "$d/b/node.pub" --name b \
      --ipv4 198.19.0.2/24 --out "$d/b/node.crt"; } >"$d/pki.log" 2>&1; then
    mark_down "$path" "weft CLI (ca init / init / ca sign) failed: $(tail -n 3 "$d/pki.log")"
    return 1
  fi
  # Adapt the configs `weft init` wrote: unique TUN names, private control
  # sockets, the bench MTU if forced, and each other as peers.
  local peer other_ip
  for n in a b; do
    if [[ $n == a ]]; then peer=b other_ip=198.18.0.2; else peer=a other_ip=198.18.0.1; fi
    sed -i \
      -e "s|^name = \"weft0\"|name = \"$tun$n\"|" \
      -e "s|^socket = .*|socket = \"$d/$n/control.sock\"|" \
      -e "s|^listen = .*|listen = \"0.0.0.0:4800\"|" \
      "$d/$n/weft.toml"
    if [[ -n "$MTU" ]]; then sed -i -e "s|^mtu = .*|mtu = $MTU|" "$d/$n/weft.toml"; fi
    if [[ -n "$offload" ]]; then
      if ! grep -q '^offload = ' "$d/$n/weft.toml"; then
        mark_down "$path" "this weft's config has no tun.offload key"
        return 1
      fi
      sed -i -e "s|^offload = .*|offload = $offload|" "$d/$n/weft.toml"
    fi
    printf '\n[[peers]]\nname = "%s"\nendpoint = "%s:4800"\n' "$peer" "$other_ip" >>"$d/$n/weft.toml"
    if [[ -n "$WEFT_APPEND" ]]; then
      printf '\n' >>"$d/$n/weft.toml"
      cat "$WEFT_APPEND" >>"$d/$n/weft.toml"
    fi
  done
  start_in "$NS_A" "$d/a/weft.log" "$WEFT_BIN" up --config "$d/a/weft.toml"
  start_in "$NS_B" "$d/b/weft.log" "$WEFT_BIN" up --config "$d/b/weft.toml"
  if ! wait_for 20 "weft tunnel" in_a ping -c 1 -W 1 198.19.0.2; then
    mark_down "$path" "no ping over the overlay within 20 s (logs: $d/*/weft.log)"
    tail -n 20 "$d/a/weft.log" "$d/b/weft.log" >&2 || true
    stop_tunnel
    return 1
  fi
  tunnel_mtu "$path" "${tun}a"
  measure "$path" 198.19.0.2
  "$WEFT_BIN" status --config "$d/a/weft.toml" --json >"$d/status-a.json" 2>&1 || true
  stop_tunnel
}

# ----------------------------------------------------------- WireGuard ------
# wg_pair PATH IFPREFIX SUBNET PORT START_CMD...: two userspace WireGuard
# daemons (IFPREFIXa in A, IFPREFIXb in B) configured with `wg` and `ip`.
wg_pair() {
  local path="$1" ifp="$2" net="$3" port="$4"
  shift 4
  local d="$WORK/$path" n ns ifname
  mkdir -p "$d"
  mkdir -p /var/run/wireguard
  for n in a b; do
    (umask 077 && wg genkey >"$d/$n.key")
    wg pubkey <"$d/$n.key" >"$d/$n.pub"
  done
  for n in a b; do
    if [[ $n == a ]]; then ns="$NS_A"; else ns="$NS_B"; fi
    ifname="$ifp$n"
    WG_SOCKS+=("/var/run/wireguard/$ifname.sock")
    start_in "$ns" "$d/$n.log" "$@" "$ifname"
  done
  local mtu="${MTU:-1420}" peer peer_ip me
  for n in a b; do
    ifname="$ifp$n"
    if [[ $n == a ]]; then ns="$NS_A" peer=b peer_ip=198.18.0.2 me=1
    else ns="$NS_B" peer=a peer_ip=198.18.0.1 me=2; fi
    if ! wait_for 10 "$ifname" test -S "/var/run/wireguard/$ifname.sock"; then
      mark_down "$path" "$ifname did not come up (log: $d/$n.log)"
      tail -n 20 "$d/$n.log" >&2 || true
      stop_tunnel
      return 1
    fi
    if ! { ip netns exec "$ns" wg set "$ifname" private-key "$d/$n.key" listen-port "$port" \
      peer "$(cat "$d/$peer.pub")" endpoint "$peer_ip:$port" allowed-ips "$net.$((3 - me))/32" &&
      ip -n "$ns" addr add "$net.$me/24" dev "$ifname" &&
      ip -n "$ns" link set "$ifname" mtu "$mtu" up; }; then
      mark_down "$path" "configuring $ifname with wg/ip failed"
      stop_tunnel
      return 1
    fi
  done
  if ! wait_for 20 "$path tunnel" in_a ping -c 1 -W 1 "$net.2"; then
    mark_down "$path" "no ping over the tunnel within 20 s (logs: $d/*.log)"
    stop_tunnel
    return 1
  fi
  tunnel_mtu "$path" "${ifp}a"
  measure "$path" "$net.2"
  ip netns exec "$NS_A" wg show "${ifp}a" >"$d/wg-show-a.txt" 2>&1 || true
  stop_tunnel
}

if wanted weft; then
  log "== weft ($WEFT_BIN)"
  bench_weft weft "" || true
fi
if wanted weft-no-offload; then
  log "== weft with tun.offload = false"
  bench_weft weft-no-offload false || true
fi
if wanted wireguard-go; then
  log "== wireguard-go ($(wireguard-go --version 2>/dev/null | head -n 1))"
  wg_pair wireguard-go "wgg${ID}" 198.19.1 51820 \
    env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=error wireguard-go -f || true
fi
if wanted boringtun; then
  log "== boringtun ($(boringtun-cli --version 2>/dev/null | head -n 1))"
  bt_args=(boringtun-cli -f --disable-drop-privileges -v error -l "$WORK/boringtun.out")
  [[ -z "$BT_THREADS" ]] || bt_args+=(--threads "$BT_THREADS")
  wg_pair boringtun "wbt${ID}" 198.19.2 51821 env WG_SUDO=1 "${bt_args[@]}" || true
fi

# ------------------------------------------------------------------ table ---
# cell VALUE BASE DECIMALS: "value (ratio×)" or the failure marker
cell() {
  local v="$1" b="$2" dp="$3"
  if [[ -z "$v" ]]; then echo "—"; return; fi
  if [[ "$v" == fail ]]; then echo "FAIL"; return; fi
  if [[ -z "$b" || "$b" == fail ]]; then printf "%.${dp}f" "$v"; return; fi
  awk -v v="$v" -v b="$b" -v dp="$dp" 'BEGIN {
    r = (b > 0 ? v / b : 0)
    printf ("%." dp "f (%." (r < 0.1 ? 3 : 2) "f×)"), v, r
  }'
}

table() {
  local p label
  ((PARALLEL > 0)) || PARALLEL="N"
  echo "| path | MTU | TCP → Gbit/s | TCP ← (-R) Gbit/s | TCP ×$PARALLEL Gbit/s | retransmits → | tunnel CPU → | ping avg ms | ping p50 ms | ping p99 ms | ping max ms | loss |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for p in raw weft weft-no-offload wireguard-go boringtun; do
    wanted "$p" || continue
    case "$p" in
      raw) label="raw underlay (veth)" ;;
      weft-no-offload) label="weft, tun.offload = false" ;;
      *) label="$p" ;;
    esac
    if [[ -n "${R[$p.down]:-}" ]]; then
      echo "| $label | — | DOWN | DOWN | DOWN | — | — | DOWN | DOWN | DOWN | DOWN | — |"
      continue
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "${R[$p.mtu]:-?}" \
      "$(cell "${R[$p.fwd]:-}" "${R[raw.fwd]:-}" 2)" \
      "$(cell "${R[$p.rev]:-}" "${R[raw.rev]:-}" 2)" \
      "$(cell "${R[$p.par]:-}" "${R[raw.par]:-}" 2)" \
      "${R[$p.fwd.retr]:-—}" \
      "$([[ -n "${R[$p.fwd.cpu]:-}" ]] && echo "${R[$p.fwd.cpu]}%" || echo "—")" \
      "$(cell "${R[$p.rtt_avg]:-}" "${R[raw.rtt_avg]:-}" 3)" \
      "$(cell "${R[$p.rtt_p50]:-}" "${R[raw.rtt_p50]:-}" 3)" \
      "$(cell "${R[$p.rtt_p99]:-}" "${R[raw.rtt_p99]:-}" 3)" \
      "$(cell "${R[$p.rtt_max]:-}" "" 3)" \
      "${R[$p.loss]:-—}%"
  done
  echo
  echo "Ratios in parentheses are to the raw underlay in the same run. iperf3 TCP, ${DURATION} s per test;"
  echo "ping: $PINGS pings at ${PING_INTERVAL} s interval. Tunnel CPU: both tunnel daemons' CPU time during"
  echo "the → test, in % of one core (100% = one core busy)."
  echo
  echo "Machine: $(nproc) cores, kernel $(uname -r). $VERSIONS"
}

echo
table | tee ${OUT:+"$OUT"}
for p in weft weft-no-offload wireguard-go boringtun; do
  [[ -z "${R[$p.down]:-}" ]] || echo "$p: DOWN: ${R[$p.down]}"
done
# A path that was down or a test that failed makes the run fail (the table
# above still shows what did work).
if ((FAILED)); then exit 1; fi
