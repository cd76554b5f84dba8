#!/usr/bin/env bash
# The drop-in under callback floods, liburcu-memb.so.8 vs rcu-reclaim-urcu
# dropped in as liburcu-memb.so.8 through LD_LIBRARY_PATH, same binary and
# arguments (flood.c): call_rcu flood (RSS over time), call_rcu -> callback
# latency, synchronize_rcu with no registered reader, defer_rcu flood.
# Run from the repository root:
#   flock /tmp/heavy.lock crates/rcu-reclaim-urcu/bench/flood.sh [SECONDS [CASE...]]
# CASE: sync, latency, call, defer (default: all four).
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=${1:-20}
shift || true
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(sync latency call defer)
target=$(realpath -m "${CARGO_TARGET_DIR:-target}/urcu-dropin")
RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8 CARGO_TARGET_DIR=$target \
  cargo build --release --quiet -p rcu-reclaim-urcu
mkdir -p "$target/lib"
cp "$target/release/librcu_reclaim_urcu.so" "$target/lib/liburcu-memb.so.8"
gcc -O2 -o "$target/flood" crates/rcu-reclaim-urcu/bench/flood.c -pthread -lurcu-memb -lurcu-cds
for case in "${cases[@]}"; do
  case $case in
    sync) args="sync 1000000" ;;
    latency) args="latency 200" ;;
    call|defer) args="$case $secs" ;;
    *) echo "unknown case: $case" >&2; exit 2 ;;
  esac
  for which in liburcu rcu-reclaim-urcu; do
    lib=""; [ "$which" = rcu-reclaim-urcu ] && lib="$target/lib"
    echo "== $which: flood $args"
    LD_LIBRARY_PATH="$lib" "$target/flood" $args
    [ -z "$lib" ] || LD_LIBRARY_PATH="$lib" ldd "$target/flood" | grep -q "$lib/liburcu-memb.so.8" ||
      { echo "the drop-in was not loaded" >&2; exit 1; }
  done
done
