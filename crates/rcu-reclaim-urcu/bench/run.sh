#!/usr/bin/env bash
# The dynamically linked read-side pair, liburcu-memb.so.8 vs rcu-reclaim-urcu
# dropped in as liburcu-memb.so.8, side by side in one run: ns per pair (best
# of 5 rounds of 100M pairs) and instructions per pair under callgrind
# ((Collected at 2M pairs - Collected at 1M pairs) / 1M).
# Run from the repository root:  flock /tmp/heavy.lock crates/rcu-reclaim-urcu/bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8 CARGO_TARGET_DIR=target/urcu-dropin \
  cargo build --release --quiet -p rcu-reclaim-urcu
dir=target/urcu-dropin/lib
mkdir -p "$dir"
cp target/urcu-dropin/release/librcu_reclaim_urcu.so "$dir/liburcu-memb.so.8"
readelf -d "$dir/liburcu-memb.so.8" | grep SONAME
gcc -O2 -g -o target/urcu-dropin/read_pair crates/rcu-reclaim-urcu/bench/read_pair.c -lurcu-memb
exe=target/urcu-dropin/read_pair
insns() { # $1: LD_LIBRARY_PATH value, $2: pairs
  LD_LIBRARY_PATH="$1" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$2" 1 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for which in liburcu rcu-reclaim-urcu; do
  lib=""; [ "$which" = rcu-reclaim-urcu ] && lib="$PWD/$dir"
  ns=$(LD_LIBRARY_PATH="$lib" "$exe" 100000000 5)
  a=$(insns "$lib" 1000000); b=$(insns "$lib" 2000000)
  printf '%-18s %s, %s instructions/pair\n' "$which" "$ns" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 1000000 }')"
done
