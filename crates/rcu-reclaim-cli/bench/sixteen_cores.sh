#!/usr/bin/env bash
# The figures the open targets ask of a 16-core machine, in one run of
# about five minutes, from a release build of the `rcu-reclaim` binary:
#
#   update-heavy at 1, 4 and 16 threads against crossbeam-epoch and seize
#     (updates/s >= 1.0x the faster; peak garbage <= 1.0x crossbeam-epoch's);
#   read-mostly at 16 threads, rcu-reclaim and rcu-reclaim-qsbr against
#     crossbeam-epoch (reads/s >= 1.2x; mean garbage <= 4x);
#   budget at 16 threads (peak garbage against the floor);
#   cache at 16 threads against quick_cache (gets/s >= 1.0x).
#
# Every scenario alternates its backends round by round in one process, so
# each ratio compares runs made side by side on the same machine.
#
#   cargo build --release -p rcu-reclaim-cli
#   crates/rcu-reclaim-cli/bench/sixteen_cores.sh [OUT_DIR]
#
# BIN=path/to/rcu-reclaim (default target/release/rcu-reclaim, from the
# repository root); SCALE=N divides every duration by N (SCALE=20 checks
# the script itself in about 20 s). Writes one JSON file per scenario to
# OUT_DIR (default $OUT where set, else ./sixteen-cores), then prints each
# target's figures with python3 where it is installed (else the JSON is
# the result).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${BIN:-$repo/target/release/rcu-reclaim}
SCALE=${SCALE:-1}
out=${1:-${OUT:-./sixteen-cores}}
mkdir -p "$out" || exit 2
if [[ ! -x $BIN ]]; then
    echo "no rcu-reclaim binary at $BIN: run cargo build --release -p rcu-reclaim-cli first (or set BIN)" >&2
    exit 2
fi
if ! [[ $SCALE =~ ^[1-9][0-9]*$ ]]; then
    echo "SCALE must be a whole number of at least 1, not '$SCALE'" >&2
    exit 2
fi
secs() { # seconds, scaled, at least 1
    local s=$(($1 / SCALE))
    echo $((s < 1 ? 1 : s))
}
cpus=$(nproc)
echo "machine: $cpus CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
((cpus >= 16)) || echo "note: fewer than 16 CPUs; 16 threads share them"

failed=0
run() { # name, then the bench's flags
    local name=$1
    shift
    echo "== $name: rcu-reclaim bench $* --no-plot --json"
    local t0=$SECONDS
    if ! "$BIN" bench "$@" --no-plot --json >"$out/$name.json" 2>"$out/$name.err"; then
        echo "   FAILED (exit status above; stderr in $out/$name.err)"
        failed=1
    fi
    echo "   $((SECONDS - t0)) s"
}

for t in 1 4 16; do
    run "update-heavy-$t" --scenario update-heavy --threads "$t" \
        --backend crossbeam-epoch --backend seize --duration "$(secs 12)" --rounds 4
done
run read-mostly-16 --scenario read-mostly --threads 16 \
    --backend rcu-reclaim-qsbr --backend crossbeam-epoch --duration "$(secs 20)" --rounds 5
run budget-16 --scenario budget --threads 16 --backend crossbeam-epoch \
    --duration "$(secs 10)" --rounds 2
run cache-16 --scenario cache --threads 16 --backend quick_cache \
    --duration "$(secs 20)" --rounds 5

if command -v python3 >/dev/null; then
    python3 - "$out" <<'EOF'
import json, os, statistics, sys

out = sys.argv[1]

def load(name):
    path = os.path.join(out, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)["scenarios"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        print(f"{name}: no result ({e})")
        return None

def rounds(scenario, key):
    """Each backend's per-round figures of `key`."""
    return {b["backend"]: [r[key] for r in b["rounds"]] for b in scenario["backends"]}

def ratio(scenario, key, ours, theirs):
    """Median over the rounds of ours / theirs (each round runs both)."""
    r = rounds(scenario, key)
    pairs = [a / b for a, b in zip(r[ours], r[theirs]) if b]
    return statistics.median(pairs) if pairs else float("nan")

def mib(x):
    return f"{x / 2**20:.2f} MiB"

for t in (1, 4, 16):
    s = load(f"update-heavy-{t}")
    if not s:
        continue
    b = {x["backend"]: x for x in s["backends"]}
    cb = ratio(s, "updates_per_sec", "rcu-reclaim", "crossbeam-epoch")
    sz = ratio(s, "updates_per_sec", "rcu-reclaim", "seize")
    print(f"update-heavy, {t} threads: updates/s {cb:.2f}x crossbeam-epoch, {sz:.2f}x seize "
          f"(target >= 1.0x the faster: {'met' if min(cb, sz) >= 1.0 else 'missed'}); "
          f"peak garbage {mib(b['rcu-reclaim']['peak_garbage'])} against "
          f"{mib(b['crossbeam-epoch']['peak_garbage'])}")
s = load("read-mostly-16")
if s:
    for ours in ("rcu-reclaim", "rcu-reclaim-qsbr"):
        r = ratio(s, "reads_per_sec", ours, "crossbeam-epoch")
        print(f"read-mostly, 16 threads: {ours} reads/s {r:.2f}x crossbeam-epoch "
              f"(target >= 1.2x: {'met' if r >= 1.2 else 'missed'})")
# The bench's own verdicts (its --targets), from the medians it reports.
for name in ("update-heavy-1", "update-heavy-4", "update-heavy-16", "read-mostly-16",
             "budget-16", "cache-16"):
    s = load(name)
    for t in (s or {}).get("targets") or []:
        met = "met" if t.get("met") else "missed"
        print(f"{name}: {t['what']} {t['value']:.2f} (goal {t['goal']}: {met})")
s = load("cache-16")
if s:
    r = ratio(s, "gets_per_sec", "rcu-reclaim", "quick_cache")
    print(f"cache, 16 threads: gets/s {r:.2f}x quick_cache "
          f"(target >= 1.0x: {'met' if r >= 1.0 else 'missed'})")
EOF
fi
exit $failed
