#!/usr/bin/env bash
# A call_rcu flood of heavy objects (tests/c/flood_heavy.c: 4 threads, objects of
# SIZE bytes written and freed by their callbacks) in a fresh cgroup v1
# with a 100 MiB memory limit, liburcu-memb.so.8 vs rcu-reclaim-urcu
# dropped in, interleaved: the rate, the cgroup's peak usage, and whether
# the OOM killer ended the run (exit 137). Needs root and the cgroup v1
# memory hierarchy at /sys/fs/cgroup/memory. Run from the repository root:
#   crates/rcu-reclaim-urcu/bench/flood_cgroup.sh [SECONDS [SIZE...]]
# ROUNDS=N (default 3) rounds of each size, both libraries in each.
# DEFER=1: the objects are freed through defer_rcu instead of call_rcu.
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=${1:-5}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(4096 16384)
root=/sys/fs/cgroup/memory
[ -w "$root" ] || { echo "needs root and a cgroup v1 memory hierarchy at $root" >&2; exit 2; }
target=$(realpath -m "${CARGO_TARGET_DIR:-target}/urcu-dropin")
RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8 CARGO_TARGET_DIR=$target \
  cargo build --release --quiet -p rcu-reclaim-urcu
mkdir -p "$target/lib"
cp "$target/release/librcu_reclaim_urcu.so" "$target/lib/liburcu-memb.so.8"
flags=()
[ -n "${DEFER:-}" ] && flags=(-DDEFER)
gcc -O2 "${flags[@]}" -o "$target/flood_heavy" crates/rcu-reclaim-urcu/tests/c/flood_heavy.c -pthread -lurcu-memb
for size in "${sizes[@]}"; do
  for round in $(seq "${ROUNDS:-3}"); do
    for l in "liburcu=" "rcu-reclaim-urcu=$target/lib"; do
      which=${l%%=*}; lib=${l#*=}
      cg=$root/rcu-reclaim-flood-$$
      mkdir "$cg"
      echo $((100 << 20)) > "$cg/memory.limit_in_bytes"
      set +e
      out=$(LD_LIBRARY_PATH="$lib" sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' \
        "$cg" "$target/flood_heavy" 4 "$secs" "$size" 2>&1)
      rc=$?
      set -e
      peak=$(( $(cat "$cg/memory.max_usage_in_bytes") >> 20 ))
      rmdir "$cg"
      [ $rc -eq 137 ] && out="OOM-killed"
      printf '%-17s size %6s round %s: %s; cgroup peak %s MiB\n' "$which" "$size" "$round" "$out" "$peak"
    done
  done
done
