#!/usr/bin/env python3
# Ad-hoc measurement (not a test): a far-behind follower catching up by snapshot,
# three nori-node processes on loopback. Usage:
#   tests/node/measure_snapshot.py <nori-node> <payload bytes> <load seconds> [snapshot bytes/s]
# Prints entries, snapshot size, take time on the leader, and the follower's
# catch-up time and rate. Ports 17300-17302 must be free.
import json, os, shutil, subprocess, sys, time, socket
BIN = sys.argv[1]; ROOT = os.path.join(os.path.dirname(os.path.abspath(BIN)), "measure-snapshot"); PAYLOAD = int(sys.argv[2]); SECS = int(sys.argv[3])
RATE = sys.argv[4] if len(sys.argv) > 4 else str(64 << 20)
shutil.rmtree(ROOT, ignore_errors=True); os.makedirs(ROOT)
base = 17300
peers = ",".join(f"{i}@127.0.0.1:{base + i - 1}" for i in (1, 2, 3))
procs = {}
def start(i):
    d = f"{ROOT}/n{i}"; os.makedirs(d, exist_ok=True)
    p = subprocess.Popen([BIN, "--id", str(i), "--peers", peers, "--data", d, "--groups", "1", "--record-applied",
                          "--snapshot-entries", "100000000", "--snapshot-keep", "5", "--snapshot-bytes-per-s", RATE],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(f"{ROOT}/n{i}.log", "a"), text=True)
    procs[i] = p; wait(i, "ready")
def send(i, c): procs[i].stdin.write(json.dumps(c) + "\n"); procs[i].stdin.flush()
def wait(i, t):
    while True:
        l = procs[i].stdout.readline()
        if not l: raise SystemExit(f"node {i} died")
        j = json.loads(l)
        if j.get("type") == t: return j
def call(i, c, t): send(i, c); return wait(i, t)
def status(i): return call(i, {"cmd": "status"}, "status")["groups"]["1"]
def metric(i, name):
    txt = call(i, {"cmd": "metrics"}, "metrics")["text"]
    return sum(int(l.split()[-1]) for l in txt.splitlines() if l.startswith(name + " "))
def stop(i): send(i, {"cmd": "quit"}); procs[i].wait(); del procs[i]
for i in (1, 2, 3): start(i)
while True:
    lead = [i for i in procs if status(i)["role"] == 2]
    if lead: break
    time.sleep(0.05)
l = lead[0]; f = 1 if l != 1 else 2
stop(f)
send(l, {"cmd": "load", "phase": "fill", "mode": "closed", "inflight": 64, "payload": PAYLOAD, "duration_ms": SECS * 1000})
wait(l, "phase_done")
for i in procs:
    n0 = metric(i, "raft_snapshots_taken_total"); t0 = time.time()
    call(i, {"cmd": "snapshot", "group": 1}, "snapshot")
    while metric(i, "raft_snapshots_taken_total") == n0: time.sleep(0.01)
    if i == l: take_s = time.time() - t0
target = status(l)["applied"]
size = sum(os.path.getsize(os.path.join(r, x)) for r, _, fs in os.walk(f"{ROOT}/n{l}/snapshots") for x in fs)
t0 = time.time(); start(f); t_ready = time.time()
while status(f)["applied"] < target: time.sleep(0.01)
t1 = time.time()
print(f"entries {target} snapshot {size/2**20:.1f} MiB take(leader, trigger->durable) {take_s*1000:.0f} ms; "
      f"follower open {1000*(t_ready-t0):.0f} ms, open->caught up {1000*(t1-t_ready):.0f} ms "
      f"({size/2**20/(t1-t_ready):.0f} MiB/s), chunks {metric(f,'raft_snapshot_chunks_received_total')}, installed {metric(f,'raft_snapshots_installed_total')}")
for i in list(procs): stop(i)
shutil.rmtree(ROOT, ignore_errors=True)
