#!/usr/bin/env bash
# Instructions per call of the drop-in's synchronize_rcu (no reader
# registered) and call_rcu, against liburcu-memb.so.8, under callgrind:
# the calling thread's instructions inside the exported function (callgrind
# --toggle-collect), at N = 1000 and N = 2000 calls; the difference over
# 1000 is the steady-state cost per call (warm-up and first-call set-up
# cancel out). Run from the repository root:
#   crates/rcu-reclaim-urcu/bench/calls.sh [BASELINE_LIB_DIR]
# BASELINE_LIB_DIR: a directory holding another build of the drop-in as
# liburcu-memb.so.8 (say, an older commit's), measured too.
set -euo pipefail
cd "$(dirname "$0")/../../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}/urcu-dropin")
RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8 CARGO_TARGET_DIR=$target \
  cargo build --release --quiet -p rcu-reclaim-urcu
mkdir -p "$target/lib"
cp "$target/release/librcu_reclaim_urcu.so" "$target/lib/liburcu-memb.so.8"
gcc -O2 -o "$target/calls" crates/rcu-reclaim-urcu/bench/calls.c -pthread -lurcu-memb
count() { # lib_dir case n function
  LD_LIBRARY_PATH="$1" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    --collect-atstart=no --toggle-collect="$4" "$target/calls" "$2" "$3" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
libs=("liburcu=" "rcu-reclaim-urcu=$target/lib")
[ $# -gt 0 ] && libs+=("baseline=$(realpath "$1")")
for case in sync:urcu_memb_synchronize_rcu call:urcu_memb_call_rcu; do
  for l in "${libs[@]}"; do
    name=${l%%=*}; dir=${l#*=}
    a=$(count "$dir" "${case%%:*}" 1000 "${case#*:}")
    b=$(count "$dir" "${case%%:*}" 2000 "${case#*:}")
    echo "${case#*:} $name: $(( (b - a) / 1000 )) instructions per call"
  done
done
