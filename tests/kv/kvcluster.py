"""A local norikv cluster for black-box tests: processes, ports, RESP client,
and a fault-injecting TCP proxy in front of every node's Raft peer port.

Node i listens for Raft peers on its own port R_i; in its --cluster list the
other nodes appear at proxy ports P(i->j) that forward to R_j, so the link
i->j can be cut without touching the process (partition). Client ports are
not proxied: a partitioned node still accepts clients and forwards to the
leader it believes in, as a real deployment would over a separate network.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n, span=1, taken=()):
    """n ports p with p .. p+span-1 all bindable now (span 2: a node with two
    cores listens on raft_port + core), none in `taken`.

    Picked at random below the kernel's ephemeral range: a port bound to 0
    comes from that range, and so does the local port of every outgoing
    connection, so such a port could be taken by some connection (another
    test's, in a parallel ctest) before the node bound it; that happened in
    CI ("bind/listen: Address already in use"). Below the range only another
    picker can collide, and picking at random makes that unlikely."""
    hi = _ephemeral_low()
    lo = max(1024, hi - 12000)
    rng = random.Random()
    socks, ports = [], []
    used = set(taken)
    while len(ports) < n:
        p = rng.randrange(lo, hi - span)
        if any(q in used for q in range(p, p + span)):
            continue
        got = []
        try:
            for q in range(p, p + span):
                s = socket.socket()
                got.append(s)
                s.bind(("127.0.0.1", q))
        except OSError:
            for s in got:
                s.close()
            continue
        socks += got
        ports.append(p)
        used.update(range(p, p + span))
    for s in socks:
        s.close()
    return ports


class Proxy:
    """Forwards 127.0.0.1:listen -> 127.0.0.1:target until blocked."""

    def __init__(self, listen, target):
        self.listen, self.target = listen, target
        self.blocked = False
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen))
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.blocked:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=1)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            # Without TCP_NODELAY the proxy's small writes wait for the peer's
            # delayed ACK (40 ms): it would add a latency the nodes do not have.
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data or self.blocked:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def block(self):
        self.blocked = True
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self):
        self.blocked = False


class Checks:
    """The named checks of a black-box test: check(cond, what) prints ok/FAIL
    as it goes; verdict(workdir) prints the summary and returns the exit
    status (the work directory is kept for its logs on failure)."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def verdict(self, workdir):
        if self.failures:
            print("%d FAILED: %s (logs in %s)" % (len(self.failures), self.failures, workdir))
            return 1
        shutil.rmtree(workdir, ignore_errors=True)
        print("PASS")
        return 0


class Cluster:
    def __init__(self, binary, workdir, n=3, shards=4, extra_args=(), proxies=True, members=None):
        """proxies=False: nodes talk directly (benchmarks); isolate() then
        cannot partition them. members: the nodes (0-based) every --cluster
        lists (default all n); another node started lists them and itself,
        as one that joins with --join does. Tests may change the list."""
        self.binary, self.workdir, self.n = binary, workdir, n
        self.members = list(range(n)) if members is None else list(members)
        # (i, j) -> the client port node i is told for node j instead of the
        # real one (a node with a wrong book).
        self.client_told = {}
        self.use_proxies = proxies
        self.shards, self.extra_args = shards, list(extra_args)
        ports = free_ports(n * 3 + n * n)
        self.raft = ports[0:n]
        self.client = ports[n:2 * n]
        self.admin = ports[2 * n:3 * n]
        pp = ports[3 * n:]
        self.proxies = {}
        for i in range(n):
            for j in range(n):
                if i != j and proxies:
                    self.proxies[(i, j)] = Proxy(pp[i * n + j], self.raft[j])
        self.procs = [None] * n
        self.paused = set()
        os.makedirs(workdir, exist_ok=True)

    def cluster_arg(self, i):
        items = []
        for j in self.members if i in self.members else self.members + [i]:
            port = self.raft[j] if i == j or not self.use_proxies else self.proxies[(i, j)].listen
            client = self.client_told.get((i, j), self.client[j])
            items.append(f"{j + 1}=127.0.0.1:{port}:{client}")
        return ",".join(items)

    def start(self, i):
        log = open(os.path.join(self.workdir, f"n{i + 1}.log"), "ab")
        args = [self.binary, "--node", str(i + 1), "--cluster", self.cluster_arg(i),
                "--data-dir", os.path.join(self.workdir, f"n{i + 1}"),
                "--shards", str(self.shards), "--admin-port", str(self.admin[i])] + self.extra_args
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log)
        self.paused.discard(i)

    def start_all(self):
        for i in range(self.n):
            self.start(i)

    def start_members(self):
        """Starts the members; True once the first of them answers."""
        for i in self.members:
            self.start(i)
        return self.wait_ready()

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            if i in self.paused:
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait()
        self.paused.discard(i)

    def pause(self, i):
        os.kill(self.procs[i].pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i):
        os.kill(self.procs[i].pid, signal.SIGCONT)
        self.paused.discard(i)

    def isolate(self, i):
        for (a, b), p in self.proxies.items():
            if a == i or b == i:
                p.block()

    def heal(self):
        for p in self.proxies.values():
            p.heal()

    def stop_all(self):
        for i in range(self.n):
            p = self.procs[i]
            if p and p.poll() is None:
                if i in self.paused:
                    os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            if p:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def metric(self, i, name):
        """Sum of every sample of `name` on node i's /metrics (0 if it does not answer)."""
        try:
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin[i], timeout=5).read()
        except OSError:
            return 0.0
        total = 0.0
        for line in body.decode().splitlines():
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
        return total

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                c = Resp(self.client[0], timeout=2)
                r = c.call("DBSIZE")
                c.close()
                if isinstance(r, int):
                    return True
            except (OSError, RespError):
                pass
            time.sleep(0.1)
        return False


class RespError(Exception):
    pass


class Resp:
    """A minimal blocking RESP2 client (replies: str, int, None, list, RespError)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        r = self._value()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, cmds):
        """Sends every command in one write; returns the replies in order
        (errors as RespError values, not raised)."""
        out = b""
        for args in cmds:
            out += b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return [self._value() for _ in cmds]

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _value(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            return data[:-2].decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._value() for _ in range(n)]
        raise ConnectionError("bad reply type %r" % t)
