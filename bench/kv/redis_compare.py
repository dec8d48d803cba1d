#!/usr/bin/env python3
"""norikv vs Redis (appendonly yes, appendfsync always), measured in the same
run with the same tool: redis-benchmark -t set,get at 16 B and 128 B values,
1 / 64 / 256 clients, pipeline 1 and 16, against one node of a local 3-node
norikv cluster (by default the node leading the most shards; the share of its requests forwarded to other nodes'
shard leaders is measured from its /metrics) and a local redis-server.

  python3 bench/kv/redis_compare.py --norikv build-release/kv/norikv [--quick] [--out table.md]
      [--etcd-load build-release/bench/kv/etcd_put_load]

With --etcd-load (and Debian's etcd-server installed) a 3-member etcd 3.4
cluster on loopback is measured in the same run: PUTs through its v3 JSON
gateway by etcd_put_load (closed loop, one connection per client, like
redis-benchmark at pipeline 1), at 1 / 64 / 256 clients.

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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "kv"))
from kvcluster import Cluster, free_ports  # noqa: E402


def requests_for(clients, pipeline, quick):
    # A run of at least ~2 s at 64 and 256 clients: shorter ones were mostly
    # the start-up of 256 connections and the first batches.
    n = {1: 3000, 64: 80000, 256: 100000}[clients] * (4 if pipeline > 1 else 1)
    return n // 4 if quick else n


def run_bench(port, size, clients, pipeline, n, tests="set,get"):
    cmd = ["redis-benchmark", "-p", str(port), "-t", tests, "-d", str(size), "-c", str(clients),
           "-P", str(pipeline), "-n", str(n), "-r", "100000", "--csv"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = {}
    for row in csv.reader(io.StringIO(r.stdout)):
        if row and row[0] in ("SET", "GET"):
            # test, rps, avg, min, p50, p95, p99, max
            rows[row[0]] = {"rps": float(row[1]), "p50": float(row[4]), "p99": float(row[6])}
    return rows


def median_rows(runs):
    """Per test, the median of each metric over runs (each a run_bench result)."""
    out = {}
    for t in set().union(*[set(r) for r in runs]) if runs else ():
        rows = [r[t] for r in runs if t in r]
        out[t] = {k: statistics.median(x[k] for x in rows) for k in ("rps", "p50", "p99")}
    return out


def cpu_seconds(pids):
    """User + system CPU time of the given processes (all their threads), in seconds."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def metric(port, name):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except OSError:
        return 0
    m = re.search(r"^%s (\d+)" % name, text, re.M)
    return int(m.group(1)) if m else 0


def start_etcd(work):
    """A 3-member etcd cluster on loopback; returns (processes, client port of member 1)."""
    ports = free_ports(6)
    cluster = ",".join("e%d=http://127.0.0.1:%d" % (i + 1, ports[3 + i]) for i in range(3))
    procs = []
    for i in range(3):
        log = open(os.path.join(work, "etcd%d.log" % (i + 1)), "wb")
        procs.append(subprocess.Popen(
            ["etcd", "--name", "e%d" % (i + 1), "--data-dir", os.path.join(work, "etcd%d" % (i + 1)),
             "--listen-client-urls", "http://127.0.0.1:%d" % ports[i],
             "--advertise-client-urls", "http://127.0.0.1:%d" % ports[i],
             "--listen-peer-urls", "http://127.0.0.1:%d" % ports[3 + i],
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % ports[3 + i],
             "--initial-cluster", cluster, "--initial-cluster-state", "new"],
            stdout=log, stderr=log))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            req = urllib.request.Request("http://127.0.0.1:%d/v3/kv/put" % ports[0],
                                         data=b'{"key":"cHJvYmU=","value":"MQ=="}', method="POST")
            if urllib.request.urlopen(req, timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.2)
    return procs, ports[0]


def run_etcd(tool, port, size, clients, quick):
    n = {1: 1000, 64: 10000, 256: 20000}[clients] // (4 if quick else 1)
    r = subprocess.run([tool, "--port", str(port), "--clients", str(clients), "--requests", str(n),
                        "--value-bytes", str(size)], capture_output=True, text=True, timeout=600)
    f = r.stdout.strip().split(",")
    if r.returncode != 0 or len(f) < 7:
        return None
    return {"rps": float(f[3]), "p50": float(f[4]), "p99": float(f[5])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    # Layout (docs/kv.md "Benchmark"): one core per node (three nodes and the
    # client share the machine's 2 CPUs) and one shard per core, so the node
    # driven leads every shard and forwards nothing. --shards 8 spreads the
    # leaders over the nodes: the driven node then forwards the commands of
    # the shards it does not lead.
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--cores", type=int, default=1, help="reactors per norikv node")
    ap.add_argument("--tests", default="set,get", help="redis-benchmark -t")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--sizes", default="16,128")
    ap.add_argument("--node", type=int, default=0, help="node to drive (1..3); 0: the one leading most shards")
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests")
    # One run of each is mostly noise on a shared 2-vCPU machine (the 1-client
    # rows also depend on whether the scheduler happens to put the client and
    # the server on one CPU: docs/kv.md "Benchmark"). Each cell runs Redis and
    # norikv alternately this many times, the order swapped every time, and
    # reports the median of each metric.
    ap.add_argument("--repeat", type=int, default=3, help="alternated runs per cell (medians)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--etcd-load", default=None, help="etcd_put_load binary: also measure etcd 3.4")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="norikv-bench-", dir=os.environ.get("NORIKV_BENCH_DIR", "/tmp"))
    redis_port = free_ports(1)[0]
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                              "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl = Cluster(a.norikv, os.path.join(work, "norikv"), shards=a.shards, proxies=False,
                 extra_args=["--cores", str(a.cores)])
    cl.start_all()
    results = []
    etcd_rows = []
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
        tests = a.tests
        for size in [int(x) for x in a.sizes.split(",")]:
            for pipeline in [int(x) for x in a.pipelines.split(",")]:
                for clients in (1, 64, 256):
                    n = requests_for(clients, pipeline, a.quick)
                    base_runs, kv_runs = [], []
                    rcpu = kcpu = 0.0
                    c0 = metric(admin, "kv_commands_total")
                    f0 = metric(admin, "kv_forwarded_total")
                    for rep in range(max(1, a.repeat)):
                        for which in (("redis", "kv") if rep % 2 == 0 else ("kv", "redis")):
                            if which == "redis":
                                r0 = cpu_seconds([redis.pid])
                                base_runs.append(run_bench(redis_port, size, clients, pipeline, n, tests))
                                rcpu += cpu_seconds([redis.pid]) - r0
                            else:
                                k0 = cpu_seconds([p.pid for p in cl.procs])
                                kv_runs.append(run_bench(node_port, size, clients, pipeline, n, tests))
                                kcpu += cpu_seconds([p.pid for p in cl.procs]) - k0
                    c1 = metric(admin, "kv_commands_total")
                    f1 = metric(admin, "kv_forwarded_total")
                    fwd = (f1 - f0) / max(1, c1 - c0)
                    base, kv = median_rows(base_runs), median_rows(kv_runs)
                    # CPU per request of the whole service (3 norikv processes,
                    # every thread; one redis-server), over the SET+GET runs.
                    ops = len(base) * n * max(1, a.repeat)
                    cpu = (kcpu * 1e6 / max(1, ops), rcpu * 1e6 / max(1, ops))
                    for t in ("SET", "GET"):
                        if t in base and t in kv:
                            results.append((t, size, clients, pipeline, kv[t], base[t], fwd, cpu))
                            print("%s %4dB c=%3d P=%2d  norikv %9.0f/s p50 %6.3f p99 %7.3f | redis %9.0f/s "
                                  "p50 %6.3f p99 %7.3f | fwd %.0f%% | cpu us/req %.0f vs %.0f" %
                                  (t, size, clients, pipeline, kv[t]["rps"], kv[t]["p50"], kv[t]["p99"],
                                   base[t]["rps"], base[t]["p50"], base[t]["p99"], fwd * 100, cpu[0], cpu[1]),
                                  flush=True)
        cl.stop_all()
        if a.etcd_load and shutil.which("etcd"):
            procs, port = start_etcd(work)
            try:
                for size in [int(x) for x in a.sizes.split(",")]:
                    for clients in (1, 64, 256):
                        r = run_etcd(a.etcd_load, port, size, clients, a.quick)
                        if r:
                            etcd_rows.append((size, clients, r))
                            print("etcd PUT %4dB c=%3d  %9.0f/s p50 %6.3f p99 %7.3f" %
                                  (size, clients, r["rps"], r["p50"], r["p99"]), flush=True)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait()
    finally:
        cl.stop_all()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)
    lines = ["norikv: 3 nodes, %d core(s) and %d shard(s) each, node %d driven; each cell: median of %d "
             "alternated runs of each; CPU us/req: every thread of the 3 norikv processes vs redis-server, per "
             "request of the SET+GET runs." % (a.cores, a.shards, pick + 1, max(1, a.repeat)),
             "",
             "| op | value | clients | pipeline | norikv req/s | p50 ms | p99 ms | Redis fsync-always req/s "
             "| p50 ms | p99 ms | norikv/Redis req/s | CPU us/req norikv / Redis |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, size, clients, pipeline, kv, base, fwd, cpu in results:
        lines.append("| %s | %d B | %d | %d | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f | %.2f | %.0f / %.0f |" %
                     (t, size, clients, pipeline, kv["rps"], kv["p50"], kv["p99"], base["rps"], base["p50"],
                      base["p99"], kv["rps"] / max(1.0, base["rps"]), cpu[0], cpu[1]))
    fwd_all = [r[6] for r in results]
    lines.append("")
    lines.append("Forward attempts per command at the benchmarked node to another node's shard leader: %.2f (mean over runs)." %
                 ( sum(fwd_all) / max(1, len(fwd_all))))
    if etcd_rows:
        lines += ["", "etcd 3.4, 3 members on loopback, PUT via the v3 JSON gateway (etcd_put_load), same run:", "",
                  "| value | clients | etcd req/s | p50 ms | p99 ms | norikv SET req/s (pipeline 1) | norikv/etcd |",
                  "|---|---|---|---|---|---|---|"]
        for size, clients, r in etcd_rows:
            kv = [x[4] for x in results if x[0] == "SET" and x[1] == size and x[2] == clients and x[3] == 1]
            kv_rps = kv[0]["rps"] if kv else 0
            lines.append("| %d B | %d | %.0f | %.3f | %.3f | %.0f | %.1f |" %
                         (size, clients, r["rps"], r["p50"], r["p99"], kv_rps, kv_rps / max(1.0, r["rps"])))
    # The targets, pipeline 1: 1-client p50 within 2x Redis's; at 64
    # and 256 clients at least half of Redis's requests/s at a p99 no worse.
    verdicts = []
    for t, size, clients, pipeline, kv, base, fwd, cpu in results:
        if pipeline != 1:
            continue
        if clients == 1:
            x = kv["p50"] / max(1e-9, base["p50"])
            verdicts.append("%s %d B, 1 client: p50 %.3f ms = %.2fx Redis's %.3f ms (target <= 2x: %s)" %
                            (t, size, kv["p50"], x, base["p50"], "met" if x <= 2 else "missed"))
        else:
            x = kv["rps"] / max(1.0, base["rps"])
            ok = x >= 0.5 and kv["p99"] <= base["p99"]
            verdicts.append("%s %d B, %d clients: req/s %.2fx Redis's, p99 %.3f vs %.3f ms (target >= 0.5x at a "
                            "p99 no worse: %s)" % (t, size, clients, x, kv["p99"], base["p99"],
                                                   "met" if ok else "missed"))
    if verdicts:
        lines += ["", "Against the targets (pipeline 1, this run):", ""] + ["- " + v for v in verdicts]
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
