#!/usr/bin/env bash
# A/B sweep at one proposal in flight, variants alternated round by round so
# that all see the same machine (docs/bench.md, "One proposal in flight").
#
#   bench/nori-bench/ab_inflight1.sh NORI_BENCH ROUNDS "name|extra args|ENV=v ..." ...
#   bench/nori-bench/ab_inflight1.sh build-release/bench/nori-bench/nori-bench 3 \
#       "linked||" "two-ops||NORI_WAL_LINKED_SYNC=0" "slice100|--sched-slice-us 100|"
#
# One line per run: the same-run floor and its p99, commit p50 as a ratio to
# that floor, p90/p99, the leader-WAL-durable stage, commits/s, and per node
# CPU (cores) / context switches per commit. JSON results stay in
# ab-<name>-<round>.json in the current directory.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,13p' "$0"
  exit 2
fi
bench=$(realpath "$1")
rounds=$2
shift 2
for ((r = 1; r <= rounds; r++)); do
  for spec in "$@"; do
    IFS='|' read -r name extra envs <<<"$spec"
    # shellcheck disable=SC2086  # extra and envs are word lists on purpose
    env $envs "$bench" --inflight 1 --warmup 1 --duration "${DURATION:-5}" --reads none \
      --failover false $extra --json "ab-$name-$r.json" --svg /dev/null >"ab-$name-$r.log" 2>&1
    python3 - "$name" "$r" "ab-$name-$r.json" <<'PY'
import json, sys
name, r, path = sys.argv[1:]
j = json.load(open(path))
fl = j["floor"]
ph = next(p for p in j["phases"] if p["name"] == "closed-1")
cl, st = ph["commit_latency"], ph["stages"]
nodes = " ".join("%.2f/%.1f" % (n["cpu_cores"], n.get("ctx_switches_per_commit", 0))
                 for n in ph["nodes"])
print(f"{name:12s} r{r} floor {fl['commit_floor_ms']:.3f} ms (fdatasync p99 "
      f"{fl['write_4k_fdatasync']['p99_ms']:.2f}) | p50 {cl['p50_ms']:.3f} = "
      f"{cl['p50_ms'] / fl['commit_floor_ms']:.2f}x p90 {cl['p90_ms']:.3f} p99 {cl['p99_ms']:.3f}"
      f" | leader WAL {st['leader_wal_durable']['p50_ms']:.3f}/{st['leader_wal_durable']['p99_ms']:.3f}"
      f" | {ph['commits_per_s']:.0f}/s | cpu/cs {nodes}", flush=True)
PY
  done
  uptime
done
