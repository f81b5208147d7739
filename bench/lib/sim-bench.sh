# bench/lib/sim-bench.sh — sourced by bench/dht.sh and bench/mcast.sh.
#
# build_sim_bench TAG BINARY [REV]: builds the weft-sim benchmark BINARY in
# release mode, from commit REV exported into /tmp/weft-TAG-src (so that
# half-done edits in the working tree are not measured) or, without REV,
# from the working tree. Sets COMMIT (what was built, with a warning when
# the working tree has uncommitted changes to the crates) and BIN (the
# binary's path). Build output goes to stderr.
build_sim_bench() {
  local tag="$1" binary="$2" rev="${3:-}"
  local repo src target_dir
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  src="$repo"
  if [[ -n "$rev" ]]; then
    COMMIT="$(git -C "$repo" rev-parse --short "$rev")"
    src="/tmp/weft-$tag-src"
    printf '[%s] exporting %s into %s\n' "$tag" "$COMMIT" "$src" >&2
    rm -rf "$src"
    mkdir -p "$src"
    git -C "$repo" archive "$rev" | tar -x -C "$src"
  else
    COMMIT="$(git -C "$repo" rev-parse --short HEAD)"
    if ! git -C "$repo" diff --quiet HEAD -- crates/weft-core crates/weft-sim Cargo.toml Cargo.lock; then
      COMMIT="$COMMIT + uncommitted changes in crates/weft-core or crates/weft-sim"
    fi
  fi
  target_dir="${CARGO_TARGET_DIR:-$src/target}"
  printf '[%s] building %s (release) in %s\n' "$tag" "$binary" "$src" >&2
  (cd "$src" && CARGO_TARGET_DIR="$target_dir" cargo build --release -p weft-sim --bin "$binary" >&2)
  BIN="$target_dir/release/$binary"
}
