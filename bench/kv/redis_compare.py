#!/usr/bin/env python3
"""norikv vs Redis (appendonly yes, appendfsync always), measured in the same
run with the same tool: redis-benchmark -t set,get at 16 B and 128 B values,
1 / 64 / 256 clients, pipeline 1 and 16, against one node of a local 3-node
norikv cluster (by default the node leading the most shards; the share of its requests forwarded to other nodes'
shard leaders is measured from its /metrics) and a local redis-server.

  python3 bench/kv/redis_compare.py --norikv build-release/kv/norikv [--quick] [--out table.md]

Everything (3 norikv nodes, redis-server, redis-benchmark) shares the
machine's cores: numbers from a busy machine are noisy; the ratio to the
Redis baseline measured minutes apart in the same run is what matters.
"""
import argparse
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "kv"))
from kvcluster import Cluster, free_ports  # noqa: E402


def requests_for(clients, pipeline, quick):
    n = {1: 2000, 64: 20000, 256: 40000}[clients] * (4 if pipeline > 1 else 1)
    return n // 4 if quick else n


def run_bench(port, size, clients, pipeline, n):
    cmd = ["redis-benchmark", "-p", str(port), "-t", "set,get", "-d", str(size), "-c", str(clients),
           "-P", str(pipeline), "-n", str(n), "-r", "100000", "--csv"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = {}
    for row in csv.reader(io.StringIO(r.stdout)):
        if row and row[0] in ("SET", "GET"):
            # test, rps, avg, min, p50, p95, p99, max
            rows[row[0]] = {"rps": float(row[1]), "p50": float(row[4]), "p99": float(row[6])}
    return rows


def metric(port, name):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except OSError:
        return 0
    m = re.search(r"^%s (\d+)" % name, text, re.M)
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--node", type=int, default=0, help="node to drive (1..3); 0: the one leading most shards")
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="norikv-bench-", dir=os.environ.get("NORIKV_BENCH_DIR", "/tmp"))
    redis_port = free_ports(1)[0]
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                              "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl = Cluster(a.norikv, os.path.join(work, "norikv"), shards=a.shards)
    cl.start_all()
    results = []
    try:
        if not cl.wait_ready():
            print("norikv cluster not ready", file=sys.stderr)
            return 1
        time.sleep(1)
        # The node that leads the most shards (fewest forwards), unless --node.
        led = []
        for i in range(cl.n):
            info = subprocess.run(["redis-cli", "-p", str(cl.client[i]), "info"], capture_output=True,
                                  text=True).stdout
            m = re.search(r"shards_led:(\d+)", info)
            led.append(int(m.group(1)) if m else 0)
        pick = a.node - 1 if a.node > 0 else max(range(cl.n), key=lambda i: led[i])
        print("shards led per node: %s; benchmarking node %d" % (led, pick + 1), flush=True)
        node_port, admin = cl.client[pick], cl.admin[pick]
        for size in (16, 128):
            for pipeline in (1, 16):
                for clients in (1, 64, 256):
                    n = requests_for(clients, pipeline, a.quick)
                    base = run_bench(redis_port, size, clients, pipeline, n)
                    c0 = metric(admin, "kv_commands_total")
                    f0 = metric(admin, "kv_forwarded_total")
                    kv = run_bench(node_port, size, clients, pipeline, n)
                    c1 = metric(admin, "kv_commands_total")
                    f1 = metric(admin, "kv_forwarded_total")
                    fwd = (f1 - f0) / max(1, c1 - c0)
                    for t in ("SET", "GET"):
                        if t in base and t in kv:
                            results.append((t, size, clients, pipeline, kv[t], base[t], fwd))
                            print("%s %4dB c=%3d P=%2d  norikv %9.0f/s p50 %6.3f p99 %7.3f | redis %9.0f/s "
                                  "p50 %6.3f p99 %7.3f | fwd %.0f%%" %
                                  (t, size, clients, pipeline, kv[t]["rps"], kv[t]["p50"], kv[t]["p99"],
                                   base[t]["rps"], base[t]["p50"], base[t]["p99"], fwd * 100), flush=True)
    finally:
        cl.stop_all()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| op | value | clients | pipeline | norikv req/s | p50 ms | p99 ms | Redis fsync-always req/s "
             "| p50 ms | p99 ms | norikv/Redis req/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, size, clients, pipeline, kv, base, fwd in results:
        lines.append("| %s | %d B | %d | %d | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f | %.2f |" %
                     (t, size, clients, pipeline, kv["rps"], kv["p50"], kv["p99"], base["rps"], base["p50"],
                      base["p99"], kv["rps"] / max(1.0, base["rps"])))
    fwd_all = [r[6] for r in results]
    lines.append("")
    lines.append("Forward attempts per command at the benchmarked node to another node's shard leader: %.2f (mean over runs)." %
                 ( sum(fwd_all) / max(1, len(fwd_all))))
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
