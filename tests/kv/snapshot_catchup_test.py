"""A real 3-process norikv cluster brings a far-behind follower back by
snapshot (issue 6's acceptance test), refuses a wiped node that would rejoin
silently, and a whole-cluster restart after snapshots and compaction loses
nothing. (A wiped node is replaced through membership change:
kv_membership_test.)

With small thresholds (--snapshot-entries, --snapshot-keep-entries) the
leaders snapshot and compact their logs while a follower is down, so the log
no longer holds what it misses: only a snapshot transfer can bring it back.
Every acknowledged write must then be readable on that follower's own
replica (READONLY reads serve local state), and the follower's /metrics must
show installed snapshots: a catch-up by log replay would not pass.

  python3 snapshot_catchup_test.py --norikv build/kv/norikv [--workdir DIR]
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Checks, Cluster, Resp, RespError  # noqa: E402

SHARDS = 2


def write_keys(port, lo, hi, tag):
    c = Resp(port, timeout=15)
    for k in range(lo, hi):
        for _ in range(100):
            try:
                if c.call("SET", "key%05d" % k, "%s%d" % (tag, k)) == "OK":
                    break
            except RespError as e:
                if not str(e).startswith(("TRYAGAIN", "CLUSTERDOWN", "UNKNOWN")):
                    raise
                time.sleep(0.05)
        else:
            raise RuntimeError("SET key%05d never succeeded" % k)
    c.close()


def local_mismatches(port, expect):
    """Keys whose value on this node's own replica differs from `expect`."""
    c = Resp(port, timeout=15)
    c.call("READONLY")
    bad = [k for k, v in expect.items() if c.call("GET", k) != v]
    c.close()
    return bad


def wait_caught_up(port, expect, timeout=60):
    deadline = time.time() + timeout
    bad = list(expect)
    while time.time() < deadline:
        try:
            bad = local_mismatches(port, expect)
        except (OSError, ConnectionError, RespError):
            bad = list(expect)
        if not bad:
            return []
        time.sleep(0.2)
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), "kv_snapshot_catchup"))
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    base_args = ["--snapshot-entries", "300", "--snapshot-keep-entries", "50"]
    cl = Cluster(a.norikv, a.workdir, shards=SHARDS, extra_args=base_args)
    check = Checks()

    cl.start_all()
    try:
        if not cl.wait_ready():
            print("FAIL: cluster not ready")
            return 1
        p1 = cl.client[0]
        expect = {}
        write_keys(p1, 0, 1000, "a")
        expect.update({"key%05d" % k: "a%d" % k for k in range(1000)})

        # 1. Far-behind followers: node 3, then node 2, are down while the
        #    log moves on and is compacted past what they hold.
        for victim, lo, hi, tag in ((2, 1000, 2500, "b"), (1, 0, 1500, "c")):
            cl.kill(victim)
            write_keys(p1, lo, hi, tag)
            expect.update({"key%05d" % k: "%s%d" % (tag, k) for k in range(lo, hi)})
            cl.start(victim)
            bad = wait_caught_up(cl.client[victim], expect)
            check(not bad, "far-behind node %d holds every acknowledged write (%d missing)" %
                  (victim + 1, len(bad)))
            n = cl.metric(victim, "raft_snapshots_installed_total")
            check(n >= 1, "node %d caught up by installing snapshots (%d installed)" % (victim + 1, n))
        check(cl.metric(0, "raft_snapshots_taken_total") >= 1, "node 1 took snapshots")

        # 2. Everything restarts: state comes back from snapshots plus the log tail.
        cl.stop_all()
        cl.start_all()
        check(cl.wait_ready(), "cluster ready after a full restart")
        for i in range(3):
            bad = wait_caught_up(cl.client[i], expect)
            check(not bad, "node %d has every write after the restart (%d missing)" % (i + 1, len(bad)))
        c = Resp(cl.client[0], timeout=15)
        check(c.call("DBSIZE") == len(expect), "DBSIZE after the restart")
        c.close()

        # 3. A wiped node must not come back silently (it forgot its votes):
        #    with --initial-cluster-state existing its empty directory is
        #    refused. Replacing it goes through membership change
        #    (kv_membership_test: a new node joins and catches up by snapshot).
        cl.kill(2)
        shutil.rmtree(os.path.join(a.workdir, "n3"))
        cl.extra_args = base_args + ["--initial-cluster-state", "existing"]
        cl.start(2)
        try:
            rc = cl.procs[2].wait(timeout=30)
        except Exception:  # noqa: BLE001 - still running: it was not refused
            rc = None
        check(rc is not None and rc != 0, "wiped node 3 is refused with --initial-cluster-state existing")
    finally:
        cl.stop_all()
    return check.verdict(a.workdir)


if __name__ == "__main__":
    sys.exit(main())
