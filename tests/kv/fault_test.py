"""Black-box fault test of norikv: clients do GET/SET/APPEND over RESP against
all three nodes while a nemesis kills (SIGKILL) and restarts nodes, pauses
them (SIGSTOP/SIGCONT) and partitions them (proxies on the peer links). The
history (call/return times; outcome-unknown replies recorded as `info`) is
checked with nori-lincheck: nothing acknowledged may be lost and the history
must be linearizable.

  python3 fault_test.py --norikv build/kv/norikv --lincheck build/tests/lincheck/nori-lincheck \
      [--seconds 45] [--read-mode lease|read-index] [--seed N] [--workdir DIR]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Cluster, Resp, RespError  # noqa: E402

KEYS = ["k%d" % i for i in range(6)]


def classify_error(msg):
    """ok/fail/info from a norikv error reply (docs/kv.md, 'Errors')."""
    if msg.startswith("UNKNOWN"):
        return "info"
    if msg.startswith(("TRYAGAIN", "CLUSTERDOWN", "ERR")):
        return "fail"
    return "info"  # anything unexpected: assume it may have applied


class Client(threading.Thread):
    def __init__(self, cid, cluster, history, lock, stop, rng):
        super().__init__(daemon=True)
        self.cid, self.cluster, self.history, self.lock = cid, cluster, history, lock
        self.stop_ev, self.rng = stop, rng
        self.conn, self.seq = None, 0

    def record(self, op):
        with self.lock:
            self.history.append(op)

    def run(self):
        while not self.stop_ev.is_set():
            if self.conn is None:
                node = self.rng.randrange(self.cluster.n)
                try:
                    self.conn = Resp(self.cluster.client[node], timeout=8)
                except OSError:
                    time.sleep(0.05)
                    continue
            self.one_op()
            time.sleep(self.rng.uniform(0, 0.01))

    def one_op(self):
        key = self.rng.choice(KEYS)
        kind = self.rng.choices(["get", "put", "append"], [4, 2, 3])[0]
        self.seq += 1
        value = "c%dn%d;" % (self.cid, self.seq)
        op = {"client": self.cid, "op": kind, "key": key}
        if kind != "get":
            op["value"] = value
        op["call"] = time.monotonic_ns()
        try:
            if kind == "get":
                r = self.conn.call("GET", key)
                op["output"] = "" if r is None else r
            elif kind == "put":
                self.conn.call("SET", key, value)
            else:
                self.conn.call("APPEND", key, value)
            op["status"] = "ok"
        except RespError as e:
            op["status"] = classify_error(str(e))
            op["error"] = str(e)
        except (OSError, ConnectionError) as e:
            # Sent (maybe) and no reply: outcome unknown. Reconnect elsewhere.
            op["status"] = "info"
            op["error"] = "connection: %s" % e
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None
        op["return"] = time.monotonic_ns()
        if kind == "get" and op["status"] != "ok":
            return  # a failed read carries no information
        self.record(op)


def nemesis(cluster, stop, rng, log):
    while not stop.is_set():
        time.sleep(rng.uniform(1.0, 2.5))
        if stop.is_set():
            break
        victim = rng.randrange(cluster.n)
        fault = rng.choice(["kill", "pause", "partition"])
        log.append((time.monotonic_ns(), fault, victim + 1))
        if fault == "kill":
            cluster.kill(victim)
            time.sleep(rng.uniform(0.5, 2.0))
            cluster.start(victim)
        elif fault == "pause":
            cluster.pause(victim)
            time.sleep(rng.uniform(0.5, 3.0))
            cluster.resume(victim)
        else:
            cluster.isolate(victim)
            time.sleep(rng.uniform(1.0, 3.0))
            cluster.heal()
        time.sleep(rng.uniform(1.0, 2.0))  # let it recover before the next fault


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--lincheck", required=True)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("NORIKV_FAULT_SECONDS", 40)))
    ap.add_argument("--read-mode", default="lease")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("NORIKV_FAULT_SEED", time.time())))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--snapshot-entries", type=int, default=0,
                    help="snapshot every N entries (keeping N/5 behind): installs under faults")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = a.workdir or os.path.join(os.getcwd(), "kv_fault_%s_%d" % (a.read_mode, a.seed))
    shutil.rmtree(work, ignore_errors=True)
    print("seed %d, %s reads, %.0f s, snapshot every %s entries, workdir %s" %
          (a.seed, a.read_mode, a.seconds, a.snapshot_entries or "default", work), flush=True)
    extra = ["--read-mode", a.read_mode, "--write-timeout-ms", "3000"]
    if a.snapshot_entries > 0:
        extra += ["--snapshot-entries", str(a.snapshot_entries),
                  "--snapshot-keep-entries", str(max(1, a.snapshot_entries // 5))]
    cluster = Cluster(a.norikv, work, extra_args=extra)
    cluster.start_all()
    if not cluster.wait_ready():
        print("FAIL: cluster not ready")
        cluster.stop_all()
        return 1
    history, lock, stop = [], threading.Lock(), threading.Event()
    clients = [Client(i, cluster, history, lock, stop, random.Random(a.seed * 100 + i))
               for i in range(a.clients)]
    for c in clients:
        c.start()
    faults = []
    nem_stop = threading.Event()
    nem = threading.Thread(target=nemesis, args=(cluster, nem_stop, random.Random(a.seed + 1), faults),
                           daemon=True)
    nem.start()
    time.sleep(a.seconds)
    nem_stop.set()
    nem.join()
    # Heal everything, let the clients run a little on a healthy cluster.
    cluster.heal()
    for i in range(cluster.n):
        if cluster.procs[i].poll() is not None:
            cluster.start(i)
        if i in cluster.paused:
            cluster.resume(i)
    time.sleep(3)
    stop.set()
    for c in clients:
        c.join(timeout=15)
    # Final reads of every key: anything acknowledged must be there.
    final = Resp(cluster.client[0], timeout=10)
    for k in KEYS:
        for _ in range(50):
            t0 = time.monotonic_ns()
            try:
                r = final.call("GET", k)
            except RespError:
                time.sleep(0.1)
                continue
            history.append({"client": 1000, "op": "get", "key": k, "output": "" if r is None else r,
                            "call": t0, "return": time.monotonic_ns(), "status": "ok"})
            break
    final.close()
    taken = sum(cluster.metric(i, "raft_snapshots_taken_total") for i in range(cluster.n))
    installed = sum(cluster.metric(i, "raft_snapshots_installed_total") for i in range(cluster.n))
    cluster.stop_all()
    path = os.path.join(work, "history.jsonl")
    with open(path, "w") as f:
        for op in sorted(history, key=lambda o: o["call"]):
            f.write(json.dumps(op) + "\n")
    counts = {}
    for op in history:
        counts[op["status"]] = counts.get(op["status"], 0) + 1
    oks = sum(1 for o in history if o["status"] == "ok" and o["op"] != "get")
    print("history: %d operations %s, %d acknowledged writes, faults %s" %
          (len(history), counts, oks, [f[1:] for f in faults]), flush=True)
    print("snapshots since the last restarts: %d taken, %d installed" % (taken, installed), flush=True)
    if a.snapshot_entries > 0 and taken < 1:
        print("FAIL: no snapshot was taken: the snapshot variant proved nothing")
        return 1
    if oks < 20:
        print("FAIL: too few acknowledged writes (%d): the test proved nothing" % oks)
        return 1
    rc = subprocess.call([a.lincheck, "-v", path])
    if rc != 0:
        print("FAIL: nori-lincheck exit %d; history %s (seed %d)" % (rc, path, a.seed))
        return 1
    print("PASS: linearizable (seed %d)" % a.seed)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
