#!/usr/bin/env bash
# synchronize_rcu with every reader reporting a quiescent state about every
# 10 us: liburcu-qsbr.so.8 vs the rcu-reclaim drop-in, the same binary, runs
# alternated.  Run from the repository root:
#   crates/rcu-reclaim-urcu-qsbr/bench/sync_qs.sh [READERS [SYNCS [ROUNDS]]]
set -euo pipefail
cd "$(dirname "$0")/../../.."
readers=${1:-2} syncs=${2:-2000} rounds=${3:-3}
RCU_RECLAIM_URCU_QSBR_SONAME=liburcu-qsbr.so.8 CARGO_TARGET_DIR=target/urcu-dropin \
  cargo build --release --quiet -p rcu-reclaim-urcu-qsbr
dir=target/urcu-dropin/lib-qsbr
mkdir -p "$dir"
cp target/urcu-dropin/release/librcu_reclaim_urcu_qsbr.so "$dir/liburcu-qsbr.so.8"
gcc -O2 -o target/urcu-dropin/sync_qs crates/rcu-reclaim-urcu-qsbr/bench/sync_qs.c -lurcu-qsbr -lpthread
for r in $(seq "$rounds"); do
  printf 'liburcu-qsbr      '; target/urcu-dropin/sync_qs "$readers" "$syncs"
  printf 'rcu-reclaim-urcu  '; LD_LIBRARY_PATH="$PWD/$dir" target/urcu-dropin/sync_qs "$readers" "$syncs"
done
