#!/usr/bin/env bash
# Go's sync.Map against readmostly's maps on the lab's routing workload, taking
# turns round by round so both run under the same background load:
#
#   benches/go_sync_map/run.sh [ROUNDS] [THREADS] [DURATION_MS]
#
# LAB_ARGS adds lab flags: LAB_ARGS="--hasher foldhash" gives the Rust maps a
# fast hash like the AES-based one Go's runtime uses for strings (the lab's
# default, std's SipHash-1-3, is DoS-resistant and slower).
#
# Each round runs the lab (`--workloads routing`, one run per cell) and then the
# Go program (one run per thread count); the script prints each round's Mops/s
# and, per thread count and map, the median over rounds of the per-round ratio to
# Go's sync.Map. Needs `go` (Debian: golang-go, Go 1.19: sync.Map's read/dirty
# design) and a release build of the lab (cargo builds it). Run it alone: it
# measures.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-5}
threads=${2:-1,2,4,8}
duration=${3:-300}
maps=${MAPS:-syncmap,scc-hashindex,rwlock,dashmap,papaya}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

command -v go >/dev/null || { echo "go not found (apt-get install golang-go)" >&2; exit 1; }
(cd benches/go_sync_map && go build -o "$out/go_sync_map" .)
cargo bench -p readmostly-lab --no-run 2>/dev/null
echo "::: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(go version)"

for round in $(seq 1 "$rounds"); do
    cargo bench -q -p readmostly-lab -- --workloads routing --maps "$maps" \
        --threads "$threads" --runs 1 --duration-ms "$duration" \
        --no-latency --no-memory --no-plots --out "$out/lab$round" ${LAB_ARGS:-} >/dev/null 2>&1
    "$out/go_sync_map" -threads "$threads" -runs 1 -duration-ms "$duration" >"$out/go$round.txt"
    echo "round $round (load $(cut -d' ' -f1 /proc/loadavg)):"
    python3 - "$out/lab$round/results.csv" "$out/go$round.txt" <<'PY'
import csv, re, sys
go = {int(m.group(1)): float(m.group(2))
      for m in re.finditer(r"threads (\d+): median ([0-9.]+)", open(sys.argv[2]).read())}
for row in csv.DictReader(open(sys.argv[1])):
    t = int(row["threads"])
    print(f"  {row['map']:28} {t:2}t {float(row['mops_median']):7.2f} Mops/s   Go {go[t]:6.2f}")
PY
done | tee "$out/rounds.txt"

python3 - "$out/rounds.txt" <<'PY'
import re, statistics, sys
ratios = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+(.+?)\s+(\d+)t\s+([0-9.]+) Mops/s\s+Go\s+([0-9.]+)", line)
    if m:
        ratios.setdefault((m.group(1), int(m.group(2))), []).append(float(m.group(3)) / float(m.group(4)))
print("median over rounds of the per-round ratio to Go's sync.Map:")
for (name, t), r in sorted(ratios.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"  {name:28} {t:2}t  {statistics.median(r):.2f}x  (rounds: {', '.join(f'{x:.2f}' for x in r)})")
PY
