# bench/lib/weft-bin.sh — sourced by bench/throughput.sh, bench/failover.sh
# and bench/qos.sh (which define log and die first).
#
# weft_bin TAG: makes sure WEFT_BIN names a release `weft` binary. Given
# one (--weft-bin), it is kept; with REV set (--rev), that commit is
# exported into /tmp/weft-TAG-src and built there (so half-done edits in
# the working tree are not measured); otherwise the working tree at REPO is
# built. Builds go to CARGO_TARGET_DIR (default REPO/target). Sets
# WEFT_BIN (absolute path), REV (short hash, when given) and WEFT_VERSION
# (what was measured, for the report).
weft_bin() {
  local tag="$1" given="$WEFT_BIN" src
  local target="${CARGO_TARGET_DIR:-$REPO/target}"
  if [[ -z "$WEFT_BIN" && -n "$REV" ]]; then
    REV="$(git -C "$REPO" rev-parse --short "$REV^{commit}")" || die "--rev: no such commit"
    src="/tmp/weft-$tag-src"
    log "cargo build --release -p weft (commit $REV, in $src)"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$REPO" archive "$REV" | tar -x -C "$src"
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p weft --bin weft)
    WEFT_BIN="$target/release/weft"
  elif [[ -z "$WEFT_BIN" ]]; then
    log "cargo build --release -p weft (working tree)"
    (cd "$REPO" && cargo build --release -p weft --bin weft)
    WEFT_BIN="$target/release/weft"
  fi
  [[ -x "$WEFT_BIN" ]] || die "no weft binary at $WEFT_BIN"
  WEFT_BIN="$(realpath "$WEFT_BIN")"
  if [[ -n "$given" ]]; then
    WEFT_VERSION="weft binary $given"
  elif [[ -n "$REV" ]]; then
    WEFT_VERSION="weft $REV (release)"
  else
    WEFT_VERSION="weft working tree at $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+changes') (release)"
  fi
}
