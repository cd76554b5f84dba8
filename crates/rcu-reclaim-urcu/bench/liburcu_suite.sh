#!/usr/bin/env bash
# liburcu 0.13.2's own test suites against the drop-ins (memb and QSBR) and
# against Debian's libraries, same binaries, one library set at a time.
# Run from anywhere:
#   crates/rcu-reclaim-urcu/bench/liburcu_suite.sh [LIBURCU_SRC_DIR]
# Needs: liburcu-dev (Debian's libraries, for the comparison), a deb-src
# line in the apt sources (for `apt-get source`), and autoconf, automake
# and libtool (`apt-get install -y autoconf automake libtool`: Debian's
# patches touch Makefile.am, so the tree is regenerated before it builds).
# LIBURCU_SRC_DIR: an unpacked liburcu 0.13.2 source tree (`apt-get source
# liburcu`); configured and built here when it has no Makefile yet. Without it, WORK/liburcu-0.13.2 is used (fetched with
# apt-get source when missing). The tree's tests are rewired: its
# src/.libs/lib*.so.8 become links to WORK/cur/, which points at WORK/ours
# (the drop-ins as liburcu.so.8, liburcu-memb.so.8 and liburcu-qsbr.so.8,
# every other library Debian's) or WORK/deb (all Debian's), so liburcu's
# libtool wrappers (make check, make regtest, runhash.sh) load the chosen
# set. Programs relinked with -lurcu-memb instead of -lurcu run through
# LD_LIBRARY_PATH.
# WORK=DIR (default /tmp/liburcu-suite); LIBSETS="ours deb" (default);
# FULL=1 adds run-urcu-tests.sh 1 (the benchmark suite's urcu_1_seconds.tap:
# 859 runs, about 35 minutes a set on 2 cores).
# SUITES="unit regtest runhash programs examples" (default, all; any subset):
# unit: tests/unit make check; regtest: tests/regression make regtest;
# runhash: tests/benchmark/runhash.sh 1; programs: the benchmark and
# rcutorture programs run one by one below; examples: liburcu's
# doc/examples that use memb (urcu.h, urcu/urcu-memb.h) or QSBR, built here
# against the installed headers three ways (linked as their Makefiles say,
# with -lurcu-memb instead of -lurcu, and with _LGPL_SOURCE), each run's
# output compared with the same binary's on Debian's libraries (DIFF when
# it differs; the rculfhash examples seed their hash with time(NULL), so
# their "random order" lines are compared sorted). SUITES=examples alone
# needs only the unpacked source tree (about 1 minute for both sets).
# Prints one RESULT line per run (pass, FAIL, HANG, CRASH, STALL: passed
# after our stall warning, which a correct run never prints, or DIFF;
# exit status, seconds, command) and each suite's totals; logs stay in
# WORK/logs.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${WORK:-/tmp/liburcu-suite}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)
src=${1:-$WORK/liburcu-0.13.2}
sys=/usr/lib/x86_64-linux-gnu
libs="liburcu liburcu-memb liburcu-qsbr liburcu-mb liburcu-signal liburcu-bp liburcu-cds liburcu-common"
SUITES=" ${SUITES:-unit regtest runhash programs examples} "
want() { [[ $SUITES == *" $1 "* ]]; }
for s in $SUITES; do
  case $s in unit | regtest | runhash | programs | examples) ;; *) echo "unknown suite $s (SUITES: unit regtest runhash programs examples)"; exit 1 ;; esac
done
# Every suite but examples needs the tree built.
tree=0
for s in unit regtest runhash programs; do want $s && tree=1; done
[ "${FULL:-0}" = 1 ] && tree=1

if [ ! -d "$src" ]; then
  (cd "$WORK" && apt-get source liburcu) || { echo "apt-get source liburcu failed (add a deb-src line)"; exit 1; }
fi
src=$(cd "$src" && pwd)
if [ $tree = 1 ] && [ ! -f "$src/Makefile" ]; then
  for tool in autoreconf automake libtoolize; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y autoconf automake libtool"; exit 1; }
  done
  (cd "$src" && autoreconf -fi && ./configure && make -j2) >"$WORK/logs/build.log" 2>&1 || { echo "liburcu build failed: $WORK/logs/build.log"; exit 1; }
fi
# TESTS is empty in these directories by default: `make check` builds the programs only.
if [ $tree = 1 ]; then
  for d in unit regression benchmark; do
    make -C "$src/tests/$d" check TESTS= >>"$WORK/logs/build.log" 2>&1 || { echo "building tests/$d failed: $WORK/logs/build.log"; exit 1; }
  done
fi

# The drop-ins, one build per SONAME.
(
  cd "$repo" || exit 1
  RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8 RCU_RECLAIM_URCU_QSBR_SONAME=liburcu-qsbr.so.8 \
    cargo build --release --quiet -p rcu-reclaim-urcu -p rcu-reclaim-urcu-qsbr || exit 1
  t=${CARGO_TARGET_DIR:-target}/release
  mkdir -p "$WORK/ours" "$WORK/deb"
  rm -f "$WORK"/ours/*.so.8 "$WORK"/deb/*.so.8
  cp "$t/librcu_reclaim_urcu.so" "$WORK/ours/liburcu-memb.so.8"
  cp "$t/librcu_reclaim_urcu_qsbr.so" "$WORK/ours/liburcu-qsbr.so.8"
  RCU_RECLAIM_URCU_SONAME=liburcu.so.8 cargo build --release --quiet -p rcu-reclaim-urcu || exit 1
  cp "$t/librcu_reclaim_urcu.so" "$WORK/ours/liburcu.so.8"
) || { echo "cargo build failed"; exit 1; }
for l in $libs; do
  ln -sf "$sys/$l.so.8" "$WORK/deb/$l.so.8"
  [ -e "$WORK/ours/$l.so.8" ] || ln -sf "$sys/$l.so.8" "$WORK/ours/$l.so.8"
  [ $tree = 0 ] || ln -sfn "$WORK/cur/$l.so.8" "$src/src/.libs/$l.so.8"
done

# liburcu's test objects relinked with -lurcu-memb (the in-tree builds use -lurcu).
B=$src/tests/benchmark
R=$src/tests/regression
X=$WORK/relinked
mkdir -p "$X"
lk() { local out=$1; shift; gcc -o "$X/$out" "$@" -pthread || echo "link of $out failed"; }
if want programs; then
  for p in test_urcu test_urcu_gc test_urcu_defer test_urcu_assign test_urcu_timing; do lk "$p" "$B/$p.o" -lurcu-memb; done
  lk test_urcu_dynamic_link "$B/test_urcu_dynamic_link-test_urcu.o" -lurcu-memb
  lk test_urcu_lgc "$B/test_urcu_lgc-test_urcu_gc.o" -lurcu-memb
  lk test_urcu_assign_dynamic_link "$B/test_urcu_assign_dynamic_link-test_urcu_assign.o" -lurcu-memb
  lk test_urcu_yield "$B/test_urcu_yield-test_urcu.o" "$src/tests/common/.libs/libdebug-yield.a" -lurcu-memb
  for p in test_urcu_lfq test_urcu_lfs test_urcu_lfs_rcu; do
    lk "$p" "$B/$p.o" -lurcu-memb -lurcu-cds
  done
  lk test_urcu_lfq_dynlink "$B/test_urcu_lfq_dynlink-test_urcu_lfq.o" -lurcu-memb -lurcu-cds
  lk test_urcu_lfs_dynlink "$B/test_urcu_lfs_dynlink-test_urcu_lfs.o" -lurcu-memb -lurcu-cds
  lk test_urcu_lfs_rcu_dynlink "$B/test_urcu_lfs_rcu_dynlink-test_urcu_lfs_rcu.o" -lurcu-memb -lurcu-cds
  lk rcutorture_urcu_membarrier "$R/rcutorture_urcu_membarrier-urcutorture.o" "$src/tests/utils/libtap.a" -lurcu-memb
  lk test_urcu_fork "$R/test_urcu_fork.o" "$src/tests/utils/libtap.a" -lurcu-memb
fi

# liburcu's doc/examples that use memb or QSBR, built against the installed
# headers (the tree's own builds carry an RPATH to its src/.libs), each
# three ways: NAME as its Makefile links it (-lurcu, -lurcu-qsbr, plus
# -lurcu-cds), NAME[-lurcu-memb], NAME[_LGPL_SOURCE] (the read side inlined).
E=$WORK/examples
examples=()
if want examples; then
  mkdir -p "$E"
  ex() { gcc -g -O2 -Wall -I"$d" "$@" -pthread 2>>"$WORK/logs/build.log" || echo "build of $name failed: $WORK/logs/build.log"; }
  for c in "$src"/doc/examples/*/*.c; do
    grep -qE '#include <urcu(/urcu-memb|/urcu-qsbr)?\.h>' "$c" || continue
    d=$(dirname "$c"); n=$(basename "$c" .c); name=$(basename "$d")/$n
    l=$(sed -n 's/^LIBS = //p' "$d/Makefile.$n")
    mkdir -p "$E/$(basename "$d")"
    ex -o "$E/$name" "$c" $l && examples+=("$name")
    m=
    for w in $l; do [ "$w" = -lurcu ] && w=-lurcu-memb; m+=" $w"; done
    if [ "$m" != " $l" ]; then
      ex -o "$E/$name[-lurcu-memb]" "$c" $m && examples+=("$name[-lurcu-memb]")
    fi
    ex -D_LGPL_SOURCE -o "$E/$name[_LGPL_SOURCE]" "$c" $l && examples+=("$name[_LGPL_SOURCE]")
  done
fi
# The rculfhash examples' iteration order follows a time-seeded hash: the
# items of such a line are sorted before outputs are compared.
norm() { perl -pe 's/^((?:hash table content \(random order\)|removing all nodes): )(.*)$/my ($p, $l) = ($1, $2); $p . join(" ", sort $l =~ m{\([^)]*\)|\S+}g)/e' "$1"; }

run() { # run LIBDIR LABEL PROGRAM ARGS...
  local dir=$1 label=$2; shift 2
  local s e rc st
  s=$(date +%s%N)
  LD_LIBRARY_PATH=$dir timeout -k 5 "${TO:-60}" "$@" >"$WORK/logs/last.out" 2>&1
  rc=$?
  e=$((($(date +%s%N) - s) / 100000000))
  st=pass
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then st=HANG; elif [ $rc -gt 128 ]; then st=CRASH; elif [ $rc -ne 0 ]; then st=FAIL
  # A run that passed after a grace period stalled past the stall timeout
  # (21 s) was held up, not fast: a deadlock broken only by time.
  elif grep -q 'rcu-reclaim: reader stall' "$WORK/logs/last.out"; then st=STALL
  # ref=FILE: the output expected (normalized), else DIFF.
  elif [ -n "${ref:-}" ] && ! norm "$WORK/logs/last.out" | cmp -s - "$ref"; then st=DIFF; fi
  status=$st
  echo "RESULT $set $st $rc $((e / 10)).$((e % 10))s $label ${*:2}"
  if [ $st = DIFF ]; then norm "$WORK/logs/last.out" | diff "$ref" - | sed -n '2,6s/^/    | /p'
  elif [ $st != pass ]; then tail -5 "$WORK/logs/last.out" | sed 's/^/    | /'; fi
}
totals() { grep -E '^# (TOTAL|PASS|FAIL|ERROR|XPASS):' "$1" | tr '\n' ' '; echo; }

# The examples' expected outputs: each binary's on Debian's libraries.
if want examples; then
  mkdir -p "$WORK/logs/examples-ref"
  for x in "${examples[@]}"; do
    LD_LIBRARY_PATH=$WORK/deb timeout -k 5 "${TO:-60}" "$E/$x" >"$WORK/logs/last.out" 2>&1 ||
      echo "reference run of $x on Debian's libraries exited $?"
    norm "$WORK/logs/last.out" >"$WORK/logs/examples-ref/${x//\//_}.out"
  done
fi

for set in ${LIBSETS:-ours deb}; do
  ln -sfn "$WORK/$set" "$WORK/cur"
  L=$WORK/$set
  echo "== $set: $(readlink -f "$L/liburcu.so.8") $(readlink -f "$L/liburcu-qsbr.so.8")"
  if want examples; then
    declare -A count=()
    for x in "${examples[@]}"; do
      ref=$WORK/logs/examples-ref/${x//\//_}.out run "$L" "doc/examples/$x" "$E/$x"
      count[$status]=$((${count[$status]:-0} + 1))
    done
    echo "SUITE $set doc/examples runs=${#examples[@]} pass=${count[pass]:-0} FAIL=${count[FAIL]:-0} HANG=${count[HANG]:-0} CRASH=${count[CRASH]:-0} STALL=${count[STALL]:-0} DIFF=${count[DIFF]:-0}"
    unset count
  fi
  if want unit; then
    (cd "$src/tests/unit" && rm -f ./*.log ./*.trs && make check >"$WORK/logs/unit-$set.log" 2>&1)
    echo "SUITE $set tests/unit make check rc=$? $(totals "$WORK/logs/unit-$set.log")"
  fi
  if want regtest; then
    (cd "$R" && rm -f ./*.log ./*.trs && timeout 1800 make regtest >"$WORK/logs/regtest-$set.log" 2>&1)
    echo "SUITE $set tests/regression make regtest rc=$? $(totals "$WORK/logs/regtest-$set.log")"
  fi
  if want runhash; then
    (cd "$B" && timeout 900 ./runhash.sh 1 >"$WORK/logs/runhash-$set.log" 2>&1)
    echo "SUITE $set tests/benchmark runhash.sh 1 rc=$? ok=$(grep -c '^ok' "$WORK/logs/runhash-$set.log") not_ok=$(grep -c '^not ok' "$WORK/logs/runhash-$set.log")"
  fi
  if [ "${FULL:-0}" = 1 ]; then
    (cd "$B" && timeout 5400 ./run-urcu-tests.sh 1 >"$WORK/logs/run-urcu-tests-$set.log" 2>&1)
    echo "SUITE $set tests/benchmark run-urcu-tests.sh 1 rc=$? ok=$(grep -c '^ok' "$WORK/logs/run-urcu-tests-$set.log") not_ok=$(grep -c '^not ok' "$WORK/logs/run-urcu-tests-$set.log")"
  fi
  want programs || continue
  # In-tree builds (linked with -lurcu / -lurcu-qsbr; _dynamic_link/_dynlink ones without _LGPL_SOURCE).
  for p in test_urcu test_urcu_dynamic_link test_urcu_yield test_urcu_gc test_urcu_lgc test_urcu_defer \
           test_urcu_assign test_urcu_assign_dynamic_link test_urcu_lfq test_urcu_lfq_dynlink test_urcu_lfs \
           test_urcu_lfs_dynlink test_urcu_lfs_rcu test_urcu_lfs_rcu_dynlink \
           test_urcu_qsbr test_urcu_qsbr_dynamic_link test_urcu_qsbr_gc test_urcu_qsbr_lgc; do
    run "$L" "$p" "$B/.libs/$p" 2 2 1
    run "$L" "$p" "$B/.libs/$p" 2 2 1 -d 0 -b 32768
    run "$L" "$p" "$B/.libs/$p" 2 1 1 -c 1024 -b 32768
    run "$L" "$p" "$B/.libs/$p" 4 0 1
    run "$L" "$p" "$B/.libs/$p" 8 8 2 -b 1
  done
  run "$L" test_urcu_timing "$B/.libs/test_urcu_timing" 2 1
  run "$L" test_urcu_qsbr_timing "$B/.libs/test_urcu_qsbr_timing" 2 1
  run "$L" test_urcu_hash "$B/.libs/test_urcu_hash" 4 4 2 -A -v
  run "$L" test_urcu_hash "$B/.libs/test_urcu_hash" 8 8 2 -A -U -C 4 -v
  for t in rcutorture_urcu_membarrier rcutorture_urcu_qsbr; do
    for c in callrcu_global callrcu_percpu callrcu_perthread; do
      run "$L" "$t" "$R/.libs/$t" 8 stress 2 "$c"
      run "$L" "$t" "$R/.libs/$t" 6 perf 2 "$c"
    done
  done
  # Relinked with -lurcu-memb.
  for p in test_urcu test_urcu_dynamic_link test_urcu_yield test_urcu_gc test_urcu_lgc test_urcu_defer \
           test_urcu_assign test_urcu_assign_dynamic_link test_urcu_lfq test_urcu_lfq_dynlink test_urcu_lfs \
           test_urcu_lfs_dynlink test_urcu_lfs_rcu test_urcu_lfs_rcu_dynlink; do
    run "$L" "$p[-lurcu-memb]" "$X/$p" 2 2 1
    run "$L" "$p[-lurcu-memb]" "$X/$p" 2 1 1 -c 1024 -b 32768
  done
  run "$L" "test_urcu_timing[-lurcu-memb]" "$X/test_urcu_timing" 2 1
  for m in rperf perf uperf stress; do
    for c in callrcu_global callrcu_percpu callrcu_perthread; do
      run "$L" "rcutorture_urcu_membarrier[-lurcu-memb]" "$X/rcutorture_urcu_membarrier" 2 "$m" 1 "$c"
    done
  done
  run "$L" "test_urcu_fork[-lurcu-memb]" "$X/test_urcu_fork"
done
