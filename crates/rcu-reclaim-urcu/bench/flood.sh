#!/usr/bin/env bash
# The drop-in under callback floods, liburcu-memb.so.8 vs rcu-reclaim-urcu
# dropped in as liburcu-memb.so.8 through LD_LIBRARY_PATH, same binary and
# arguments (flood.c): call_rcu flood (RSS over time), call_rcu -> callback
# latency, synchronize_rcu with no registered reader, defer_rcu flood.
# Run from the repository root:
#   flock /tmp/heavy.lock crates/rcu-reclaim-urcu/bench/flood.sh [SECONDS [CASE...]]
# CASE: sync, latency, call, defer (default: all four).
# ROUNDS=N (default 1): N rounds of each case, every library once per round
# in turn (interleaved, so background load hits them alike).
# BASELINE=DIR: also run the drop-in build in DIR (as liburcu-memb.so.8),
# say an older commit's, after liburcu and before this one.
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
libs=("liburcu=")
[ -z "${BASELINE:-}" ] || libs+=("baseline=$(realpath "$BASELINE")")
libs+=("rcu-reclaim-urcu=$target/lib")
for case in "${cases[@]}"; do
  case $case in
    sync) args="sync 1000000" ;;
    latency) args="latency 200" ;;
    call|defer) args="$case $secs" ;;
    *) echo "unknown case: $case" >&2; exit 2 ;;
  esac
  for round in $(seq "${ROUNDS:-1}"); do
    for l in "${libs[@]}"; do
      which=${l%%=*}; lib=${l#*=}
      echo "== $which: flood $args (round $round, load $(cut -d' ' -f1 /proc/loadavg))"
      LD_LIBRARY_PATH="$lib" "$target/flood" $args
      # (ldd's output in full first: `ldd | grep -q` fails under pipefail
      # when grep quits before ldd has written everything.)
      [ -z "$lib" ] || grep -q "$lib/liburcu-memb.so.8" <<<"$(LD_LIBRARY_PATH="$lib" ldd "$target/flood")" ||
        { echo "the drop-in was not loaded" >&2; exit 1; }
    done
  done
done
