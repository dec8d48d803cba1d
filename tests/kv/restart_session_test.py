"""A restarted norikv node must give its new client connections session ids
that no shard has seen before. The node id and incarnation survive a restart
and the per-core connection counter starts again, so a session id built from
those alone repeats: a new connection's writes then collide with an old
connection's cached replies and are answered as duplicates (or with the old
reply) without being applied, losing acknowledged writes.

  python3 restart_session_test.py --norikv build/kv/norikv [--workdir DIR]
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvcluster import Cluster, Resp, RespError  # noqa: E402

CONNS = 12
WRITES = 4


def writes_from_fresh_connections(port, key, tag):
    """APPENDs from CONNS new connections; returns the failures seen."""
    failures = []
    for c in range(CONNS):
        conn = Resp(port, timeout=10)
        for w in range(WRITES):
            piece = "%s%d.%d;" % (tag, c, w)
            try:
                before = conn.call("STRLEN", key)
                after = conn.call("APPEND", key, piece)
            except RespError as e:
                failures.append("conn %d write %d: %s" % (c, w, e))
                continue
            if after != before + len(piece):
                failures.append("conn %d write %d: APPEND returned %s, expected %d" %
                                (c, w, after, before + len(piece)))
        conn.close()
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--norikv", required=True)
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), "kv_restart_session"))
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    cl = Cluster(a.norikv, a.workdir, shards=2)
    cl.start_all()
    failures = []
    try:
        if not cl.wait_ready():
            print("FAIL: cluster not ready")
            return 1
        port = cl.client[0]
        failures += writes_from_fresh_connections(port, "log", "a")
        cl.kill(0)
        cl.start(0)
        if not cl.wait_ready():
            print("FAIL: node 1 not ready after restart")
            return 1
        failures += writes_from_fresh_connections(port, "log", "b")
        final = Resp(cl.client[1], timeout=10).call("GET", "log")
        for tag in "ab":
            for c in range(CONNS):
                for w in range(WRITES):
                    piece = "%s%d.%d;" % (tag, c, w)
                    if piece not in final:
                        failures.append("acknowledged APPEND %r missing from the final value" % piece)
    finally:
        cl.stop_all()
    if failures:
        print("%d FAILED (logs in %s):\n  %s" % (len(failures), a.workdir, "\n  ".join(failures[:20])))
        return 1
    shutil.rmtree(a.workdir, ignore_errors=True)
    print("PASS: %d connections before and after a restart, every write applied once" % CONNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
