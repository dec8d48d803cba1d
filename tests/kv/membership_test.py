"""Membership change in a real norikv cluster: a 4th process started with
--join is added with CLUSTER ADDNODE (it catches up, by snapshot since the
logs were compacted, and is promoted to voter), node 1 is removed with
CLUSTER REMOVENODE, then nodes 1 and 2 are killed: writes still commit, which
needs node 4's vote in every shard, and every acknowledged write is on node
4's own replica. Also: a bad address is refused before it is recorded, and a
change that cannot be made (no quorum) names every failed shard and whether
it may have taken effect.

  python3 membership_test.py --norikv build/kv/norikv [--workdir DIR]
"""
import argparse
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Checks, Cluster, Resp, RespError  # noqa: E402

SHARDS = 4


def call_retrying(port, *args, timeout=60, ok=lambda r: True):
    """Calls until a reply passes `ok`; returns (reply or last error, passed)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            c = Resp(port, timeout=15)
            r = c.call(*args)
            c.close()
            if ok(r):
                return r, True
            last = r
        except (RespError, OSError, ConnectionError) as e:
            last = e
        time.sleep(0.2)
    return last, False


def write_keys(port, lo, hi, tag, expect):
    for k in range(lo, hi):
        key, value = "key%04d" % k, "%s%d" % (tag, k)
        r, passed = call_retrying(port, "SET", key, value, timeout=30, ok=lambda r: r == "OK")
        if not passed:
            raise RuntimeError("SET %s never succeeded: %s" % (key, r))
        expect[key] = value


def local_missing(port, expect):
    try:
        c = Resp(port, timeout=15)
        c.call("READONLY")
        bad = [k for k, v in expect.items() if c.call("GET", k) != v]
        c.close()
        return bad
    except (OSError, ConnectionError, RespError):
        return list(expect)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), "kv_membership"))
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    base_args = ["--snapshot-entries", "100", "--snapshot-keep-entries", "20"]
    cl = Cluster(a.norikv, a.workdir, n=4, shards=SHARDS, extra_args=base_args, proxies=False,
                 members=[0, 1, 2])
    members = cl.members
    check = Checks()

    try:
        if not cl.start_members():
            print("FAIL: cluster not ready")
            return 1
        expect = {}
        write_keys(cl.client[0], 0, 400, "a", expect)

        # Bad input is refused before anything is recorded.
        r, _ = call_retrying(cl.client[0], "CLUSTER", "ADDNODE", "5", "localhost:7000", "7001",
                             timeout=5, ok=lambda r: True)
        check(isinstance(r, RespError) and str(r).startswith("ERR CLUSTER ADDNODE"),
              "ADDNODE with a non-numeric host is refused (%s)" % r)
        try:
            with open(os.path.join(a.workdir, "n1", "kv-peers")) as f:
                book = f.read()
        except OSError:
            book = ""
        check(not book.startswith("5 ") and "\n5 " not in book,
              "the refused node's client port is not kept in kv-peers")

        cl.extra_args = base_args + ["--join"]
        cl.start(3)
        cl.extra_args = base_args
        r, passed = call_retrying(cl.client[0], "CLUSTER", "ADDNODE", "4", "127.0.0.1:%d" % cl.raft[3],
                                  str(cl.client[3]), ok=lambda r: r == "OK")
        check(passed, "CLUSTER ADDNODE 4 accepted (%s)" % r)
        want = "4 127.0.0.1 %d" % cl.client[3]
        for i in members:
            try:
                with open(os.path.join(a.workdir, "n%d" % (i + 1), "kv-peers")) as f:
                    book = f.read().split("\n")
            except OSError:
                book = []
            check(want in book, "node %d keeps node 4's client port in kv-peers" % (i + 1))
        write_keys(cl.client[3], 400, 500, "b", expect)  # through the new node
        deadline, missing = time.time() + 60, list(expect)
        while time.time() < deadline and missing:
            missing = local_missing(cl.client[3], expect)
            time.sleep(0.3)
        check(not missing, "node 4 holds every acknowledged write (%d missing)" % len(missing))
        check(cl.metric(3, "raft_snapshots_installed_total") >= 1,
              "node 4 caught up by snapshot (the logs were compacted)")

        # Removal waits for node 4's promotion (one change at a time).
        r, passed = call_retrying(cl.client[1], "CLUSTER", "REMOVENODE", "1", timeout=90,
                                  ok=lambda r: r == "OK")
        check(passed, "CLUSTER REMOVENODE 1 accepted (%s)" % r)
        # Repeating a change that is done (or still completing) is +OK,
        # even on a node that has not yet seen the first one committed (the
        # leader then refuses the duplicate; norikv sees it in this node's
        # latest configuration and counts the shard as done).
        for args in (("REMOVENODE", "1"),
                     ("ADDNODE", "4", "127.0.0.1:%d" % cl.raft[3], str(cl.client[3]))):
            try:
                c = Resp(cl.client[2], timeout=30)
                r = c.call("CLUSTER", *args)
                c.close()
            except (RespError, OSError, ConnectionError) as e:
                r = e
            check(r == "OK", "a repeated CLUSTER %s %s is +OK (%s)" % (args[0], args[1], str(r)[:300]))
        members.remove(0)
        time.sleep(1)
        cl.kill(0)
        cl.kill(1)
        # {3, 4} is a majority of {2, 3, 4} only if node 4 votes in every shard.
        write_keys(cl.client[2], 500, 560, "c", expect)
        check(True, "writes commit with nodes 1 and 2 down (node 4 is a voter of every shard)")
        deadline, missing = time.time() + 30, list(expect)
        while time.time() < deadline and missing:
            missing = local_missing(cl.client[3], expect)
            time.sleep(0.3)
        check(not missing, "node 4 has every write after the change (%d missing)" % len(missing))

        # Node 3 restarts with its original --cluster (nodes 1-3): it finds
        # node 4's client port in kv-peers and can forward to it again.
        cl.kill(2)
        cl.extra_args = base_args + ["--member-change-timeout-ms", "3000"]
        cl.start(2)
        cl.extra_args = base_args
        write_keys(cl.client[2], 560, 600, "d", expect)
        check(True, "writes through restarted node 3 commit (it forwards to node 4 where it leads)")
        print("     restarted node 3 forwarded %d commands (to node 4, the only other live node)" %
              cl.metric(2, "kv_forwarded_total"), flush=True)

        # A change that cannot be made (node 3 alone: no shard can commit)
        # fails after --member-change-timeout-ms, naming every failed shard
        # and whether the change may have taken effect there. A shard that
        # node 3 still led (lease not yet expired) may have accepted it: the
        # entry is appended, which is all MemberWait::kAppended promises.
        cl.kill(3)
        try:
            c = Resp(cl.client[2], timeout=30)
            r = c.call("CLUSTER", "REMOVENODE", "2")
            c.close()
        except (RespError, OSError, ConnectionError) as e:
            r = e
        text = str(r)
        m = re.match(r"ERR CLUSTER REMOVENODE 2 failed in (\d+) of %d shards \(the change "
                     r"(did not take effect in them|may have taken effect in (\d+) of them);"
                     % SHARDS, text)
        named = re.findall(r"\[shard (\d+): .*?\((not applied|may have taken effect)\)\]",
                           text)
        failed = int(m.group(1)) if m else 0
        maybe = int(m.group(3)) if m and m.group(3) else 0
        check(isinstance(r, RespError) and m is not None and failed >= 1 and
              len(named) == failed and
              maybe == sum(1 for _, how in named if how == "may have taken effect"),
              "REMOVENODE without a quorum names every failed shard and its outcome (%s)" %
              text[:400])
    except RuntimeError as e:
        check(False, str(e))
    finally:
        cl.stop_all()
    return check.verdict(a.workdir)


if __name__ == "__main__":
    sys.exit(main())
