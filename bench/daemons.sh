#!/usr/bin/env bash
# bench/daemons.sh — whole weft daemons at scale: N real `weft up` processes,
# one network namespace each on one Linux bridge, idle.
#
# Run as root:  bench/daemons.sh [options] N...
#
# For each N it builds a fresh overlay: a CA and N nodes h0..h(N-1) made
# with the weft CLI (`weft ca init`, `weft init`, `weft ca sign`), underlay
# addresses 198.18.0.1 up in 198.18.0.0/15 on veth links into one bridge
# (which lives in a namespace of its own), overlay IPv4 198.19.0.1 up. Host
# h0 names no bootstrap; host i names exactly one DHT bootstrap endpoint,
# an earlier host chosen at random (no [[peers]] anywhere, default
# [neighbours]). No data traffic. It lets the daemons settle for --settle
# seconds, then measures a --window of idle:
#
#   - control bytes/s per node sent and received: the host's veth counters
#     (read on the bridge side), so Ethernet, IP and UDP headers included:
#     everything the daemon sends and receives is control traffic here;
#   - sessions per node: "established" peers in `weft status --json`,
#     sampled about every 10 s through settle and window, the peak per node;
#   - CPU per daemon over the window (user + system time from
#     /proc/PID/stat), as a percentage of one core;
#   - RSS per daemon from /proc/PID/status at the end of the window;
#   - of --pairs random ordered pairs (a, b), how many ping: a's daemon
#     looks b up by name (`weft lookup hB --json`) and a pings the overlay
#     address it learnt (3 requests, 1 s each; one reply counts).
#
# One Markdown table row per N. Results and the command are in
# docs/BENCHMARKS.md ("Whole daemons at scale").
#
# What it guarantees: every name it makes starts with a unique stem (wdb +
# this script's PID); on every exit path (also Ctrl-C and errors) it stops
# the daemons it started by PID (SIGTERM, SIGKILL after 5 s), deletes its
# namespaces and removes its temp directory. Every wait and loop is bounded.
#
# One host-wide setting: the kernel's neighbour (ARP/NDP) table is one table
# for all network namespaces, and its hard limit (gc_thresh3, 1024 entries
# by default) is set only in the root namespace. N daemons that talk to
# each other need about N*(N-1) underlay entries plus as many on the TUN
# devices: past about 30 daemons the table overflows ("neighbor table
# overflow!" in dmesg) and sends fail with ENOBUFS before any packet
# reaches weft. So the script raises gc_thresh2/3 for IPv4 and IPv6 to fit
# the largest N if they are lower, and puts the old values back on exit.

set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bench/daemons.sh [options] N...   (as root; default N: 24)

  --settle S        seconds the daemons run before the window (default 60)
  --window S        idle measurement window, seconds (default 30)
  --pairs P         random ordered pairs that must ping (default 40)
  --seed S          seed of the bootstrap and pair choices (default 1)
  --weft-bin PATH   use this weft binary instead of building one
  --rev REV         build weft from this commit (git archive into
                    /tmp/weft-daemons-src) instead of the working tree
  --label TEXT      the table's first column (default: what was measured)
  --explain         for each pair that does not ping, print to stderr how
                    the sender sees the receiver (its peer entry in
                    `weft status --json` and `weft trace`) and the reverse
  --header          print the table header before the rows
  -h, --help        this text

Environment: CARGO_TARGET_DIR is honoured when building weft (release).
EOF
}

SETTLE=60
WINDOW=30
PAIRS=40
SEED=1
WEFT_BIN=""
REV=""
HEADER=0
LABEL=""
EXPLAIN=0
SIZES=()
while (($#)); do
  case "$1" in
    --settle) SETTLE="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --pairs) PAIRS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --weft-bin) WEFT_BIN="$2"; shift 2 ;;
    --rev) REV="$2"; shift 2 ;;
    --label) LABEL="$2"; shift 2 ;;
    --header) HEADER=1; shift ;;
    --explain) EXPLAIN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) SIZES+=("$1"); shift ;;
  esac
done
((${#SIZES[@]})) || SIZES=(24)

log() { printf '[daemons] %s\n' "$*" >&2; }
die() { printf '[daemons] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (namespaces, a bridge, TUN devices)"
for tool in ip jq ping; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (scripts/install-test-deps.sh)"
done
((EXPLAIN == 0)) || command -v curl >/dev/null 2>&1 || die "--explain needs curl (to read /metrics)"
for n in "${SIZES[@]}"; do
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 2 && n <= 1000)) || die "N must be 2 to 1000, not $n"
done
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

# shellcheck source=lib/weft-bin.sh
source "$REPO/bench/lib/weft-bin.sh"
weft_bin daemons

PORT=4800
STEM="wdb$$"
STOP_SECS=5
# Per-command bound for everything that talks to a daemon.
CMD_TIMEOUT=10

# What the current overlay made, for cleanup.
DIR=""
NAMESPACES=()
PIDS=()

cleanup() {
  local pid deadline ns
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + STOP_SECS))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  for ((k = ${#NAMESPACES[@]} - 1; k >= 0; k--)); do
    ns="${NAMESPACES[k]}"
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    rm -rf "/etc/netns/$ns"
  done
  NAMESPACES=()
  if [[ -n "$DIR" ]]; then
    rm -rf "$DIR"
    DIR=""
  fi
}
# The neighbour-table limits found at start ("name=value" lines), put back
# by restore_neigh on exit.
NEIGH_SAVED=()

# Raises the host's neighbour-table limits so that n daemons fit (see the
# header). Only raises; never lowers a limit someone set higher.
raise_neigh_limits() {
  local n="$1" want key cur
  want=$((4 * n * n))
  for key in net.ipv4.neigh.default.gc_thresh2 net.ipv4.neigh.default.gc_thresh3 \
    net.ipv6.neigh.default.gc_thresh2 net.ipv6.neigh.default.gc_thresh3; do
    cur="$(sysctl -n "$key")"
    local need=$want
    [[ "$key" == *thresh2 ]] && need=$((want / 2))
    if ((cur < need)); then
      NEIGH_SAVED+=("$key=$cur")
      sysctl -q -w "$key=$need"
      log "raised $key from $cur to $need for $n daemons (put back on exit)"
    fi
  done
}

restore_neigh() {
  local kv
  for kv in "${NEIGH_SAVED[@]}"; do sysctl -q -w "$kv" || log "could not put back $kv"; done
  NEIGH_SAVED=()
}

trap 'cleanup; restore_neigh' EXIT
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

# Address number k (1 up) in a /15 or /16 that starts at A.B.0.0.
addr() { printf '%s.%d.%d' "$1" $(($2 / 256)) $(($2 % 256)); }
underlay() { addr 198.18 $(($1 + 1)); }
overlay() { addr 198.19 $(($1 + 1)); }
bridge_ns() { echo "${STEM}br"; }
host_ns() { echo "${STEM}h$1"; }

# Builds credentials, network and configs for N hosts and starts the daemons.
build_overlay() {
  local n="$1" i j dir ns br bootstrap
  DIR="$(mktemp -d "/tmp/${STEM}.XXXXXX")"
  "$WEFT_BIN" ca init --name weft-bench --dir "$DIR/ca" >/dev/null
  br="$(bridge_ns)"
  ip netns add "$br"
  NAMESPACES+=("$br")
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  for ((i = 0; i < n; i++)); do
    dir="$DIR/h$i"
    ns="$(host_ns "$i")"
    "$WEFT_BIN" init --dir "$dir" >/dev/null
    "$WEFT_BIN" ca sign --ca-key "$DIR/ca/ca.key" --public-key "$dir/node.pub" \
      --name "h$i" --ipv4 "$(overlay "$i")/16" --out "$dir/node.crt" >/dev/null
    cp "$DIR/ca/ca.crt" "$dir/ca.crt"
    bootstrap=""
    if ((i > 0)); then
      j=$((RANDOM % i))
      bootstrap="\"$(underlay "$j"):$PORT\""
    fi
    cat >"$dir/weft.toml" <<EOF
# Written by bench/daemons.sh: host h$i of $n.
[node]
key = "node.key"
certificate = "node.crt"
ca = "ca.crt"
listen = "$(underlay "$i"):$PORT"

[tun]
name = "weft0"

[control]
socket = "$dir/control.sock"

[log]
level = "warn"

[dns]
configure_resolver = false

[daemon]
state_dir = "$dir/state"

[dht]
bootstrap = [$bootstrap]
EOF
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip -n "$br" link add "h$i" type veth peer name u0 netns "$ns"
    ip -n "$br" link set "h$i" master br0 up
    ip -n "$ns" addr add "$(underlay "$i")/15" dev u0
    ip -n "$ns" link set u0 up
    ip -n "$ns" link set lo up
  done
  for ((i = 0; i < n; i++)); do
    dir="$DIR/h$i"
    # `ip netns exec` execs the daemon: $! is its PID.
    ip netns exec "$(host_ns "$i")" "$WEFT_BIN" up --config "$dir/weft.toml" \
      >"$dir/weft.log" 2>&1 &
    PIDS+=("$!")
  done
  # Every control socket within 30 s, or the run is void.
  local deadline=$((SECONDS + 30))
  for ((i = 0; i < n; i++)); do
    while [[ ! -S "$DIR/h$i/control.sock" ]]; do
      kill -0 "${PIDS[i]}" 2>/dev/null || die "h$i's daemon died: $(tail -5 "$DIR/h$i/weft.log")"
      ((SECONDS < deadline)) || die "h$i's control socket did not appear within 30 s"
      sleep 0.1
    done
  done
}

# weft ARGS... inside host i's namespace, bounded.
weft_in() {
  local i="$1"
  shift
  timeout "$CMD_TIMEOUT" ip netns exec "$(host_ns "$i")" "$WEFT_BIN" "$@" \
    --socket "$DIR/h$i/control.sock"
}

# Established sessions of host i now (0 if its daemon does not answer).
sessions_of() {
  weft_in "$1" status --json 2>/dev/null |
    jq '[.peers[]? | select(.state == "established")] | length' 2>/dev/null || echo 0
}

# Samples every host's sessions into PEAK[i], 16 hosts at a time (one by
# one, a sample of 64 loaded daemons took longer than the window).
sample_sessions() {
  local n="$1" i s pending=()
  for ((i = 0; i < n; i++)); do
    sessions_of "$i" >"$DIR/h$i/sessions" &
    pending+=("$!")
    if ((${#pending[@]} == 16 || i == n - 1)); then
      wait "${pending[@]}" || true
      pending=()
    fi
  done
  for ((i = 0; i < n; i++)); do
    s="$(cat "$DIR/h$i/sessions" 2>/dev/null || true)"
    [[ "$s" =~ ^[0-9]+$ ]] || s=0
    if ((s > ${PEAK[i]:-0})); then PEAK[i]="$s"; fi
  done
  return 0
}

# Runs the daemons for `secs` seconds, sampling sessions about every 10 s.
run_for() {
  local n="$1" secs="$2" end=$((SECONDS + $2))
  while ((SECONDS < end)); do
    sample_sessions "$n"
    local left=$((end - SECONDS))
    if ((left > 0)); then sleep $((left < 10 ? left : 10)); fi
  done
  return 0
}

# "PORT RX TX" per bridge port (bridge side: rx = the host's tx).
port_counters() {
  ip -n "$(bridge_ns)" -s -j link show master br0 |
    jq -r '.[] | "\(.ifname) \(.stats64.rx.bytes) \(.stats64.tx.bytes)"'
}

# Whether host a reaches host b: b looked up by name through a's daemon,
# then pinged at the overlay address learnt.
pair_pings() {
  local a="$1" b="$2" address lookup
  lookup="$(weft_in "$a" lookup "h$b" --json 2>&1)" || true
  address="$(jq -r '.record.overlay_ipv4 // empty' <<<"$lookup" 2>/dev/null)" || true
  if [[ -z "$address" ]]; then
    ((EXPLAIN)) && printf '[daemons] pair h%d -> h%d: the lookup found no address: %s\n' \
      "$a" "$b" "$(tr '\n' ' ' <<<"$lookup" | cut -c1-400)" >&2
    return 1
  fi
  if timeout "$CMD_TIMEOUT" ip netns exec "$(host_ns "$a")" \
    ping -n -q -c 3 -i 0.3 -W 1 "$address" >/dev/null 2>&1; then
    return 0
  fi
  ((EXPLAIN)) && explain_pair "$a" "$b"
  return 1
}

# Why a pair did not ping, as each end sees the other (stderr, one block).
explain_pair() {
  local a="$1" b="$2" x y out=""
  for x in "$a" "$b"; do
    y=$((x == a ? b : a))
    out+="  h$x -> h$y: peer $(weft_in "$x" status --json 2>/dev/null |
      jq -c --arg n "h$y" '[.peers[]? | select(.name == $n) |
        {state, endpoint, link, via, rtt_ms, handshakes, packets_out, packets_in}]' 2>/dev/null || echo '?')"$'\n'
    out+="    trace: $(weft_in "$x" trace "h$y" 2>&1 | tr '\n' ' ' | cut -c1-300)"$'\n'
    out+="    counters: $(counters_of "$x")"$'\n'
  done
  # The relays each end's route names.
  local relay
  for relay in $(for x in "$a" "$b"; do
    y=$((x == a ? b : a))
    weft_in "$x" status --json 2>/dev/null |
      jq -r --arg n "h$y" '.peers[]? | select(.name == $n) | .via[]?' 2>/dev/null
  done | sort -u); do
    out+="  relay $relay: $(counters_of "${relay#h}")"$'\n'
  done
  printf '[daemons] pair h%d -> h%d did not ping:\n%s' "$a" "$b" "$out" >&2
}

# The handshake and relay counters of host i, from its /metrics (the API
# token is in its directory), on one line.
counters_of() {
  local i="$1"
  timeout "$CMD_TIMEOUT" ip netns exec "$(host_ns "$i")" curl -s -m 5 \
    -H "Authorization: Bearer $(cat "$DIR/h$i/api.token" 2>/dev/null)" \
    "http://127.0.0.1:4880/metrics" 2>/dev/null |
    grep -E '^weft_(handshake|relay|rx_via_relay|rx_unknown_session|peers_refused|drops_total\{reason="relay)' |
    grep -v ' 0$' | sed 's/^weft_//; s/_total//' | tr '\n' ' '
}

# CPU time (user + system) of process PID so far, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# mean/max of the numbers on stdin, scaled by a divisor, with a format.
mean_max() {
  awk -v d="$1" -v f="$2" '{ v = $1 / d; s += v; if (NR == 1 || v > m) m = v }
    END { if (NR == 0) { print "-" } else { printf f " / " f "\n", s / NR, m } }'
}

measure() {
  local n="$1" i a b ok=0 started=$SECONDS
  PEAK=()
  log "N=$n: building the overlay"
  build_overlay "$n"
  log "N=$n: $n daemons up; settling ${SETTLE}s"
  run_for "$n" "$SETTLE"

  declare -A rx0=() tx0=() rx1=() tx1=()
  local port rx tx t0 t1 cpu0=() cpu1=()
  while read -r port rx tx; do rx0[$port]=$rx; tx0[$port]=$tx; done < <(port_counters)
  for ((i = 0; i < n; i++)); do cpu0+=("$(cpu_ticks "${PIDS[i]}")"); done
  t0="$(date +%s.%N)"
  log "N=$n: idle window ${WINDOW}s"
  run_for "$n" "$WINDOW"
  while read -r port rx tx; do rx1[$port]=$rx; tx1[$port]=$tx; done < <(port_counters)
  for ((i = 0; i < n; i++)); do cpu1+=("$(cpu_ticks "${PIDS[i]}")"); done
  t1="$(date +%s.%N)"
  local load
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  local span
  span="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"

  local sent=() received=() rss=() cpu=() dead=0 kb hz
  hz="$(getconf CLK_TCK)"
  for ((i = 0; i < n; i++)); do
    # Percent of one core: ticks / hz / span * 100.
    cpu+=("$(((${cpu1[i]} - ${cpu0[i]}) * 100 / hz))")
    # The bridge port's rx is what the host sent.
    sent+=("$((${rx1[h$i]} - ${rx0[h$i]}))")
    received+=("$((${tx1[h$i]} - ${tx0[h$i]}))")
    if kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/${PIDS[i]}/status" 2>/dev/null)" && [[ -n "$kb" ]]; then
      rss+=("$kb")
    else
      dead=$((dead + 1))
    fi
  done

  log "N=$n: pinging $PAIRS random pairs"
  local pending=() results=() k k2
  for ((k = 0; k < PAIRS; k++)); do
    a=$((RANDOM % n))
    b=$(((a + 1 + RANDOM % (n - 1)) % n))
    pair_pings "$a" "$b" &
    pending+=("$!")
    # Eight at a time.
    if ((${#pending[@]} == 8)); then
      for k2 in "${pending[@]}"; do wait "$k2" && results+=(1) || results+=(0); done
      pending=()
    fi
  done
  for k2 in "${pending[@]}"; do wait "$k2" && results+=(1) || results+=(0); done
  for k in "${results[@]}"; do ok=$((ok + k)); done

  local peaks=()
  for ((i = 0; i < n; i++)); do peaks+=("${PEAK[i]:-0}"); done
  printf '| %s | %d | %d | %s | %s | %s | %s | %s | %d/%d | %s | %d |\n' \
    "$VERSION_LABEL" "$n" "$SETTLE" \
    "$(printf '%s\n' "${sent[@]}" | mean_max "$span" '%.0f')" \
    "$(printf '%s\n' "${received[@]}" | mean_max "$span" '%.0f')" \
    "$(printf '%s\n' "${peaks[@]}" | mean_max 1 '%.1f')" \
    "$(printf '%s\n' "${cpu[@]}" | mean_max "$span" '%.1f')" \
    "$( ((${#rss[@]})) && printf '%s\n' "${rss[@]}" | mean_max 1024 '%.1f' || echo -)" \
    "$ok" "$PAIRS" "$load" "$dead"
  log "N=$n: done in $((SECONDS - started)) s"
  cleanup
}

VERSION_LABEL="${LABEL:-$WEFT_VERSION}"
RANDOM="$SEED"
max_n=0
for n in "${SIZES[@]}"; do ((n > max_n)) && max_n=$n; done
raise_neigh_limits "$max_n"
overflows_before="$(dmesg 2>/dev/null | grep -c 'neighbor table overflow' || true)"
if ((HEADER)); then
  echo "| weft | nodes | settle s | sent B/s per node: mean / max | received B/s: mean / max | sessions (peak): mean / max | CPU % of a core: mean / max | RSS MiB: mean / max | pairs ping | load avg 1/5/15 | daemons dead |"
  echo "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | ---: |"
fi
for n in "${SIZES[@]}"; do
  measure "$n"
done
overflows="$(dmesg 2>/dev/null | grep -c 'neighbor table overflow' || true)"
if ((overflows > overflows_before)); then
  log "warning: the kernel's neighbour table overflowed $((overflows - overflows_before)) times during the run (dmesg): failed pairs may be the test bed's"
fi
log "measured: $WEFT_VERSION; $(uname -sr); $(nproc) cores; $(date -u +'%Y-%m-%d %H:%M UTC')"
