#!/usr/bin/env bash
# liburcu's own benchmark programs on liburcu 0.13 and on the drop-ins, runs
# alternated: peak RSS (`/usr/bin/time -f %M`) and the operations each
# program's SUMMARY line counts. The programs come from a liburcu source
# tree built by crates/rcu-reclaim-urcu/bench/liburcu_suite.sh. Run from
# the repository root:
#   crates/rcu-reclaim-urcu-qsbr/bench/liburcu_rss.sh LIBURCU_SRC ROUNDS "PROGRAM ARGS"...
# e.g. crates/rcu-reclaim-urcu-qsbr/bench/liburcu_rss.sh \
#        /tmp/liburcu-suite/liburcu-0.13.2 2 "test_urcu_hash 4 4 6 -A -s -M 10 -N 10 -O 10"
# BASELINE=DIR: also run the drop-ins in DIR (liburcu.so.8 and
# liburcu-qsbr.so.8, say an older commit's build), after liburcu.
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ $# -ge 3 ] || { echo "usage: $0 LIBURCU_SRC ROUNDS \"PROGRAM ARGS\"..." >&2; exit 2; }
src=$(realpath "$1") rounds=$2
shift 2
bin=$src/tests/benchmark/.libs
[ -d "$bin" ] || { echo "no $bin: build the suite first (liburcu_suite.sh)" >&2; exit 2; }
target=$(realpath -m "${CARGO_TARGET_DIR:-target}/urcu-dropin")
RCU_RECLAIM_URCU_QSBR_SONAME=liburcu-qsbr.so.8 CARGO_TARGET_DIR=$target \
  cargo build --release --quiet -p rcu-reclaim-urcu-qsbr
RCU_RECLAIM_URCU_SONAME=liburcu.so.8 CARGO_TARGET_DIR=$target \
  cargo build --release --quiet -p rcu-reclaim-urcu
lib=$target/lib-rss
mkdir -p "$lib"
cp "$target/release/librcu_reclaim_urcu_qsbr.so" "$lib/liburcu-qsbr.so.8"
cp "$target/release/librcu_reclaim_urcu.so" "$lib/liburcu.so.8"
libs=("liburcu=")
[ -z "${BASELINE:-}" ] || libs+=("baseline=$(realpath "$BASELINE")")
libs+=("rcu-reclaim=$lib")
for cmd in "$@"; do
  for r in $(seq "$rounds"); do
    for entry in "${libs[@]}"; do
      name=${entry%%=*} dir=${entry#*=}
      # shellcheck disable=SC2086 # the program's arguments, split
      out=$(cd "$bin" && LD_LIBRARY_PATH=$dir /usr/bin/time -f "maxrss %M" ./$cmd 2>&1) || true
      rss=$(echo "$out" | grep -o "maxrss [0-9]*" | awk '{printf "%d", $2 / 1024}')
      ops=$(echo "$out" | grep SUMMARY | grep -oE "nr_(reads|writes|enqueues|dequeues) +[0-9]+" |
        awk '{printf "%s %.1f M  ", $1, $2 / 1e6}')
      printf '%-40s %-12s round %s  peak RSS %4s MB  %s\n' "$cmd" "$name" "$r" "$rss" "$ops"
    done
  done
done
