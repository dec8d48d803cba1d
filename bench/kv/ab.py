#!/usr/bin/env python3
"""A/B of norikv configurations: the same redis-benchmark load against a fresh
3-node cluster per configuration, the configurations alternated round after
round (order swapped every round), medians reported. For performance changes
behind a flag: on this shared 2-vCPU machine one run of each is noise.

  python3 bench/kv/ab.py --norikv build-release/kv/norikv \\
      --config "hold=--append-hold-us 5000" --config "pipelined=--append-hold-us 0" \\
      [--rounds 5] [--clients 1,64,256] [--size 16] [--tests set] [--requests 40000] [--pipeline 1]

Each --config is NAME=ARGS (extra norikv arguments, split on spaces; words
like NORI_WAL_LINKED_SYNC=1 are set in the nodes' environment instead). The
driven node is the one leading the shard (1 shard, 1 core per node, as in
redis_compare.py). Prints one line per round and configuration, then a table
of medians (req/s, p50, p99) and the ratio of each configuration's median
req/s to the first one's.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "kv"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Cluster  # noqa: E402
from redis_compare import run_bench  # noqa: E402


def leader_port(cl):
    for _ in range(100):
        for i in range(cl.n):
            info = subprocess.run(["redis-cli", "-p", str(cl.client[i]), "info"], capture_output=True,
                                  text=True).stdout
            m = re.search(r"shards_led:(\d+)", info)
            if m and int(m.group(1)) > 0:
                return cl.client[i]
        time.sleep(0.1)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--config", action="append", required=True, help="NAME=extra norikv args")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", default="1,64,256")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--tests", default="set")
    ap.add_argument("--requests", type=int, default=40000, help="per run at 64+ clients (1 client: a tenth)")
    ap.add_argument("--pipeline", type=int, default=1, help="redis-benchmark -P")
    a = ap.parse_args()
    configs = []
    for c in a.config:
        name, _, args = c.partition("=")
        configs.append((name, args.split()))
    clients = [int(x) for x in a.clients.split(",")]
    tests = a.tests.upper().split(",")
    results = {}  # (config, clients, test) -> list of rows
    work = tempfile.mkdtemp(prefix="norikv-ab-", dir=os.environ.get("NORIKV_BENCH_DIR", "/tmp"))
    try:
        for rnd in range(a.rounds):
            order = configs if rnd % 2 == 0 else list(reversed(configs))
            for name, extra in order:
                d = os.path.join(work, "r%d-%s" % (rnd, name))
                # NAME=VALUE words are environment variables of the nodes.
                env = dict(w.split("=", 1) for w in extra if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
                args = [w for w in extra if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                cl = Cluster(a.norikv, d, shards=1, proxies=False, extra_args=["--cores", "1"] + args)
                cl.start_all()
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                try:
                    if not cl.wait_ready():
                        print("cluster %s not ready" % name, file=sys.stderr)
                        return 1
                    port = leader_port(cl)
                    run_bench(port, a.size, 64, 1, 5000, a.tests)  # warm-up
                    for c in clients:
                        n = max(1000, a.requests // 10) if c == 1 else a.requests
                        rows = run_bench(port, a.size, c, a.pipeline, n, a.tests)
                        for t in tests:
                            if t in rows:
                                results.setdefault((name, c, t), []).append(rows[t])
                                r = rows[t]
                                print("round %d %-12s %s c=%3d  %9.0f/s p50 %6.3f p99 %7.3f" %
                                      (rnd, name, t, c, r["rps"], r["p50"], r["p99"]), flush=True)
                finally:
                    cl.stop_all()
                    shutil.rmtree(d, ignore_errors=True)
        print()
        print("| config | test | clients | median req/s | median p50 ms | median p99 ms | req/s vs %s |" %
              configs[0][0])
        print("|---|---|---|---|---|---|---|")
        for c in clients:
            for t in tests:
                base = results.get((configs[0][0], c, t))
                for name, _ in configs:
                    rows = results.get((name, c, t))
                    if not rows:
                        continue
                    med = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50", "p99")}
                    ratio = med["rps"] / statistics.median(r["rps"] for r in base) if base else 0
                    print("| %s | %s | %d | %.0f | %.3f | %.3f | %.2f |" %
                          (name, t, c, med["rps"], med["p50"], med["p99"], ratio))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
