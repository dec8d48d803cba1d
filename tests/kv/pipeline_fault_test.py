"""Pipelined writes under faults. A connection's pipelined writes to one
shard go to the log as one batch entry (on the leader, or forwarded to it as
one NORI.WRITEB); when that attempt fails the writes are retried one by one
with the same session numbers. This test pipelines APPENDs of unique tokens
to one key from clients on every node while the harness kills the leader
(SIGKILL, then restart), pauses a node (SIGSTOP/SIGCONT) and isolates one,
then reads the key back and checks:

  - no token is in the value twice (a batch that committed late and the
    retries of its writes applied each write once);
  - every acknowledged APPEND is there, and at the position its reply gave
    (APPEND answers the new length: the token must end exactly there), so
    every acknowledged write applied once, in the place it was answered for;
  - each pipeline's writes that applied are in the value in the order
    they were sent (a batch is retried whole, never write by write);
  - every pipelined GET (four at a time, served together) returns a prefix
    of the final value holding every APPEND its client saw acknowledged
    before sending it (linearizable reads of an append-only key);
  - every reply is a length or an error that says whether it applied
    (TRYAGAIN: certainly not; UNKNOWN: maybe; CLUSTERDOWN).

  python3 pipeline_fault_test.py --norikv build/kv/norikv [--workdir DIR] [--seconds 12]
"""
import argparse
import hashlib
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Checks, Cluster, Resp, RespError  # noqa: E402

PIPELINE = 16
KEY = "log"


class Client(threading.Thread):
    def __init__(self, cl, cid, stop):
        super().__init__(daemon=True)
        self.cl, self.cid, self.stop = cl, cid, stop
        self.acked = []      # (token, length the APPEND answered)
        self.unknown = []    # tokens whose outcome is unknown
        self.not_applied = []
        self.bad = []        # replies that are neither
        self.rounds = 0
        self.reads = []      # (length acknowledged before the read was sent, length read, sha1 of it)

    def run(self):
        node = self.cid % self.cl.n
        conn = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = Resp(self.cl.client[node], timeout=8)
                except OSError:
                    node = (node + 1) % self.cl.n
                    time.sleep(0.05)
                    continue
            if self.rounds % 10 == 9:
                # Pipelined linearizable reads, served together: each must be
                # a prefix of the final value (the key only grows) holding
                # every APPEND this client saw acknowledged before sending.
                floor = max((n for _, n in self.acked), default=0)
                try:
                    got = conn.pipeline([("GET", KEY)] * 4)
                except (OSError, ConnectionError):
                    conn.close()
                    conn = None
                    node = (node + 1) % self.cl.n
                    continue
                for v in got:
                    if isinstance(v, str):
                        self.reads.append((floor, len(v), hashlib.sha1(v.encode()).hexdigest()))
                    elif not (isinstance(v, RespError) and str(v).startswith(("TRYAGAIN", "CLUSTERDOWN"))):
                        self.bad.append(("GET", v))
            toks = ["c%dr%di%d;" % (self.cid, self.rounds, i) for i in range(PIPELINE)]
            self.rounds += 1
            try:
                replies = conn.pipeline([("APPEND", KEY, t) for t in toks])
            except (OSError, ConnectionError):
                # Closed or timed out mid-pipeline: each write may or may not have applied.
                self.unknown += toks
                conn.close()
                conn = None
                node = (node + 1) % self.cl.n
                continue
            for t, r in zip(toks, replies):
                if isinstance(r, int):
                    self.acked.append((t, r))
                elif isinstance(r, RespError) and str(r).startswith("UNKNOWN"):
                    self.unknown.append(t)
                elif isinstance(r, RespError) and str(r).startswith(("TRYAGAIN", "CLUSTERDOWN")):
                    self.not_applied.append(t)
                else:
                    self.bad.append((t, r))
        if conn is not None:
            conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), "kv_pipeline_fault"))
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print("seed %d" % a.seed)
    shutil.rmtree(a.workdir, ignore_errors=True)
    check = Checks()
    # One shard: every client's pipeline is one batch per run; a short write
    # timeout so writes caught by a fault end (TRYAGAIN/UNKNOWN) while the test runs.
    cl = Cluster(a.norikv, a.workdir, shards=1, extra_args=["--write-timeout-ms", "2000"])
    cl.start_all()
    stop = threading.Event()
    clients = []
    try:
        check(cl.wait_ready(), "cluster ready")
        batches0 = sum(cl.metric(i, "kv_write_batches_total") for i in range(cl.n))
        clients = [Client(cl, c, stop) for c in range(6)]
        for c in clients:
            c.start()
        step = a.seconds / 6
        time.sleep(step)
        leader = max(range(cl.n), key=lambda i: cl.metric(i, "raft_role"))  # 2: leader
        print("kill the leader, node %d" % (leader + 1))
        cl.kill(leader)
        time.sleep(step)
        cl.start(leader)
        time.sleep(step)
        victim = rng.randrange(cl.n)
        print("pause node %d" % (victim + 1))
        cl.pause(victim)
        time.sleep(step)
        cl.resume(victim)
        victim = rng.randrange(cl.n)
        print("isolate node %d" % (victim + 1))
        cl.isolate(victim)
        time.sleep(step)
        cl.heal()
        time.sleep(step)
        stop.set()
        for c in clients:
            c.join(timeout=30)
            check(not c.is_alive(), "client %d finished" % c.cid)
        batches = sum(cl.metric(i, "kv_write_batches_total") for i in range(cl.n)) - batches0
        check(batches > 0, "pipelined APPENDs went to the log as batches (%d batch entries)" % batches)

        value = None
        deadline = time.time() + 30
        while value is None and time.time() < deadline:
            for port in cl.client:
                try:
                    c = Resp(port, timeout=5)
                    value = c.call("GET", KEY)
                    c.close()
                    break
                except (OSError, ConnectionError, RespError):
                    time.sleep(0.2)
        check(value is not None, "the key reads back after the faults")
        value = value or ""
        tokens = [t + ";" for t in value.split(";") if t]
        counts = {}
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
        twice = [t for t, n in counts.items() if n > 1]
        check(not twice, "no APPEND applied twice (%d tokens twice: %s)" % (len(twice), twice[:5]))
        acked = [x for c in clients for x in c.acked]
        misplaced = [(t, n) for t, n in acked if value[n - len(t):n] != t]
        check(not misplaced, "every acknowledged APPEND is in the value where its reply said "
              "(%d of %d are not: %s)" % (len(misplaced), len(acked), misplaced[:5]))
        # A batch is retried whole: the writes of one pipeline that applied
        # are in the value in the order they were sent, whatever failed.
        pos = {}
        for i, t in enumerate(tokens):
            pos.setdefault(t, i)
        disordered = []
        for c in clients:
            for r in range(c.rounds):
                seen = [pos["c%dr%di%d;" % (c.cid, r, i)] for i in range(PIPELINE)
                        if "c%dr%di%d;" % (c.cid, r, i) in pos]
                if seen != sorted(seen):
                    disordered.append("c%dr%d" % (c.cid, r))
        check(not disordered, "each pipeline's writes applied in the order sent (%d pipelines were not: %s)" %
              (len(disordered), disordered[:5]))
        reads = [x for c in clients for x in c.reads]
        stale = [(f, n) for f, n, _ in reads if n < f]
        check(not stale, "every pipelined read saw the APPENDs acknowledged before it (%d of %d did not: %s)" %
              (len(stale), len(reads), stale[:5]))
        foreign = [n for _, n, h in reads if hashlib.sha1(value[:n].encode()).hexdigest() != h]
        check(not foreign, "every pipelined read is a prefix of the final value (%d of %d are not)" %
              (len(foreign), len(reads)))
        check(len(reads) > 0, "some pipelined reads were served (%d)" % len(reads))
        not_applied = [t for c in clients for t in c.not_applied]
        applied_anyway = [t for t in not_applied if t in counts]
        check(not applied_anyway, "no write answered TRYAGAIN/CLUSTERDOWN applied (%d did: %s)" %
              (len(applied_anyway), applied_anyway[:5]))
        bad = [x for c in clients for x in c.bad]
        check(not bad, "every reply is a length or a TRYAGAIN/CLUSTERDOWN/UNKNOWN error (%s)" % bad[:5])
        unknown = sum(len(c.unknown) for c in clients)
        print("acknowledged %d, unknown %d, not applied %d, in the value %d" %
              (len(acked), unknown, len(not_applied), len(tokens)))
        check(len(acked) > 0, "some APPENDs were acknowledged")
    finally:
        stop.set()
        cl.stop_all()
    return check.verdict(a.workdir)


if __name__ == "__main__":
    sys.exit(main())
