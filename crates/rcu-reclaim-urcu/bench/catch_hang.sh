#!/usr/bin/env bash
# Runs a C test program against the drop-in again and again until one run
# takes longer than LIMIT seconds, then writes every thread's backtrace (of
# the program and of its children) with gdb, and kills it; or until one
# run fails (exits non-zero), then writes its output. For hangs that
# come once in tens of runs, e.g. stress_fork under load:
#   cargo test -p rcu-reclaim-urcu --test c_abi stress_forks   # builds it
#   crates/rcu-reclaim-urcu/bench/catch_hang.sh target/tmp/c_abi/stress_fork-DLGPLSOURCE 10
# LIMIT=20 (seconds a run may take), SECS=600 (how long to keep trying),
# OUT=/tmp/catch_hang.txt; SPIN=2 spinning threads beside it (0 for none).
# Needs gdb (apt-get install -y gdb).
set -u
exe=$(realpath "$1"); shift
dropin=$(dirname "$exe")/dropin
LIMIT=${LIMIT:-20} SECS=${SECS:-600} OUT=${OUT:-/tmp/catch_hang.txt} SPIN=${SPIN:-2}
command -v gdb >/dev/null || { echo "error: gdb is not installed (apt-get install -y gdb)" >&2; exit 2; }
spinners=()
for _ in $(seq 1 "$SPIN"); do (while :; do :; done) & spinners+=($!); done
trap 'kill "${spinners[@]}" 2>/dev/null' EXIT
end=$((SECONDS + SECS)) n=0
while [ $SECONDS -lt $end ]; do
  n=$((n + 1))
  LD_LIBRARY_PATH=$dropin "$exe" "$@" > "$OUT.run" 2>&1 &
  pid=$!
  for _ in $(seq 1 $((LIMIT * 10))); do sleep 0.1; kill -0 $pid 2>/dev/null || break; done
  if kill -0 $pid 2>/dev/null; then
    {
      echo "run $n of $exe $* took over ${LIMIT}s"
      gdb -p $pid -batch -ex "thread apply all bt"
      for c in $(pgrep -P $pid); do echo "== child $c"; gdb -p $c -batch -ex "thread apply all bt"; done
      echo "== its output"; cat "$OUT.run"
    } > "$OUT" 2>&1
    kill -9 $pid
    echo "hung at run $n: backtraces in $OUT"
    exit 1
  fi
  wait $pid
  rc=$?
  if [ $rc -ne 0 ]; then
    { echo "run $n of $exe $* failed with exit status $rc"; echo "== its output"; cat "$OUT.run"; } > "$OUT"
    echo "failed at run $n (exit $rc): output in $OUT"
    exit 1
  fi
done
echo "no run of $n took over ${LIMIT}s or failed"
