#!/usr/bin/env python3
"""bench/chaos's run: a fleet under every fault at once, and the history of what it answered.

  chaos.py BIN_DIR WORK_DIR SECONDS SEED HISTORY

Three flipcached hosts (BIN_DIR/flipcached) share a tier through Redis Sentinel (a master, a
replica, three sentinels) and one versioned fake upstream (BIN_DIR/flip-fake-upstream
--serve-log). Two clients, root and uid 65534 (under setpriv when this runs as root), ask at a
steady rate for SECONDS while a schedule drawn from SEED injects faults, one every 1 to 2.5 s:

  upstream: 5xx, 429 with Retry-After, timeouts, silence, garbage, wrong-id bodies, connections
            closed mid-body, new versions of hot ids;
  Redis:    the master killed (the sentinels fail over; it comes back as a replica), DEBUG SLEEP;
  hosts:    kill -9 and restarted on its cache, SIGHUP with changed ttl and stale windows;
  admin:    purges of an id and of everything (as root);
  clients:  connections closed before or during the answer; uid 65534 tries the admin routes
            all along; the cache map is small (max_size), so it is always full.

HISTORY gets JSON lines: the clients' requests (chaos_client.py), and here {"kind":"config"},
{"kind":"fault","fault":NAME,"at":T,...}, {"kind":"purge",...} for each purge acknowledged,
{"kind":"proc",...} (RSS and open files of each host at its start and at the end) and
{"kind":"exit",...} for a host that exited when the schedule did not kill it. bench/chaos_check
judges it. The same SEED draws the same schedule.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HOSTS = 3
SENTINELS = 3
RATE = 100  # requests a second, per client (two clients: 12,000 requests in the suite's 60 s)
TTL = [5, 4]  # a reload alternates between them
STALE_WHILE_REVALIDATE = [5, 3]
STALE_IF_ERROR = 20
TIMEOUT_MS = 1000
SHARED_TIMEOUT_MS = 200
MAX_SIZE = "1M"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(port, method, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def redis_call(port, *args, timeout=2):
    """One RESP command; the raw reply's first line (enough for +OK, :N, $N, *N)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        return s.recv(65536).decode(errors="replace")


def proc_usage(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


class Run:
    def __init__(self, bin_dir, work, seconds, seed, history):
        self.bin = bin_dir
        self.work = work
        self.seconds = seconds
        self.seed = seed
        self.rng = random.Random(seed)
        self.history = open(history + ".run", "w", buffering=1)
        self.history_path = history
        self.lock = threading.Lock()
        self.hosts = []  # dicts: port, conf, proc, killed (scheduled), reload
        self.stopping = False
        self.redis = {}  # port -> Popen
        self.master_port = None

    def record(self, line):
        with self.lock:
            self.history.write(json.dumps(line, separators=(",", ":")) + "\n")

    def fault(self, name, **fields):
        self.record(dict({"kind": "fault", "fault": name, "at": time.time()}, **fields))

    # ---- the servers ----------------------------------------------------------------------

    def start_fake(self):
        self.token = "fl_chaos_%016x" % self.rng.getrandbits(64)
        with open(os.path.join(self.work, "token"), "w") as f:
            f.write(self.token + "\n")
        os.chmod(os.path.join(self.work, "token"), 0o600)
        self.serve_log = os.path.join(self.work, "served.jsonl")
        self.fake = subprocess.Popen(
            [os.path.join(self.bin, "flip-fake-upstream"), "--port", "0", "--token-file",
             os.path.join(self.work, "token"), "--serve-log", self.serve_log],
            stdout=subprocess.PIPE, text=True)
        self.fake_port = int(self.fake.stdout.readline().rsplit(":", 1)[1])

    def start_redis(self, port, replica_of=None):
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.work, "--dbfilename", "r%d.rdb" % port,
                "--enable-debug-command", "yes"]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        log = open(os.path.join(self.work, "redis-%d.log" % port), "a")
        self.redis[port] = subprocess.Popen(args, stdout=log, stderr=log)
        for _ in range(200):
            try:
                if "PONG" in redis_call(port, "PING"):
                    return
            except OSError:
                pass
            time.sleep(0.025)
        raise SystemExit("chaos: redis-server did not start on %d" % port)

    def start_sentinels(self):
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        for port in self.sentinel_ports:
            conf = os.path.join(self.work, "sentinel-%d.conf" % port)
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (port, self.work))
                f.write("sentinel monitor flip 127.0.0.1 %d 2\n" % self.master_port)
                f.write("sentinel down-after-milliseconds flip 1000\n")
                f.write("sentinel failover-timeout flip 3000\n")
            log = open(os.path.join(self.work, "sentinel-%d.log" % port), "a")
            self.redis[port] = subprocess.Popen(["redis-server", conf, "--sentinel"],
                                                stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                reply = redis_call(self.sentinel_ports[0], "SENTINEL", "master", "flip")
                fields = reply.split("\r\n")
                if "num-other-sentinels" in fields and \
                        fields[fields.index("num-other-sentinels") + 2] == str(SENTINELS - 1):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("chaos: the sentinels never found each other")

    def current_master(self):
        for port in self.sentinel_ports:
            try:
                fields = redis_call(port, "SENTINEL", "get-master-addr-by-name", "flip").split("\r\n")
                if fields[0] == "*2":
                    return int(fields[4])
            except (OSError, ValueError, IndexError):
                pass
        return self.master_port

    # ---- the hosts ------------------------------------------------------------------------

    def write_conf(self, host):
        k = host["reload"] % 2
        sentinels = " ".join("127.0.0.1:%d" % p for p in self.sentinel_ports)
        with open(host["conf"], "w") as f:
            f.write("[server]\nlisten = 127.0.0.1:%d\nmiss_rate_per_user = 0\n"
                    "allow_users = *\nadmin_users = root\n" % host["port"])
            f.write("[upstream]\nbase_url = http://127.0.0.1:%d\ntoken_file = %s\n"
                    "timeout_ms = %d\nbreaker_cooldown_ms = 500\n"
                    % (self.fake_port, os.path.join(self.work, "token"), TIMEOUT_MS))
            f.write("[cache]\npath = %s\nmax_size = %s\nttl = %d\nstale_while_revalidate = %d\n"
                    "stale_if_error = %d\nnegative_ttl = 5\nsweep_interval = 1\n"
                    % (host["cache"], MAX_SIZE, TTL[k], STALE_WHILE_REVALIDATE[k], STALE_IF_ERROR))
            f.write("[shared]\nsentinels = %s\nsentinel_master = flip\nkey_file = %s\n"
                    "timeout_ms = %d\n" % (sentinels, os.path.join(self.work, "shared-key"),
                                          SHARED_TIMEOUT_MS))
            f.write("[log]\nlevel = warning\n")

    def launch(self, host):
        log = open(os.path.join(self.work, "host%d.log" % host["name"]), "a")
        host["proc"] = subprocess.Popen([os.path.join(self.bin, "flipcached"), "-c", host["conf"]],
                                        stdout=log, stderr=log)
        for _ in range(400):
            try:
                if http_call(host["port"], "GET", "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.025)
        rss, fds = proc_usage(host["proc"].pid)
        self.record({"kind": "proc", "when": "start", "host": host["name"], "at": time.time(),
                     "pid": host["proc"].pid, "rss_kb": rss, "fds": fds})

    def start_hosts(self):
        with open(os.path.join(self.work, "shared-key"), "w") as f:
            f.write("%064x\n" % self.rng.getrandbits(256))
        os.chmod(os.path.join(self.work, "shared-key"), 0o600)
        for name in range(HOSTS):
            host = {"name": name, "port": free_port(), "reload": 0, "killed": False,
                    "conf": os.path.join(self.work, "host%d.conf" % name),
                    "cache": os.path.join(self.work, "cache%d" % name)}
            self.write_conf(host)
            self.hosts.append(host)
            self.launch(host)

    def watch_hosts(self):
        """Any host that exits when the schedule did not kill it is recorded."""
        while not self.stopping:
            for host in self.hosts:
                proc = host.get("proc")
                if proc and not host["killed"] and proc.poll() is not None:
                    self.record({"kind": "exit", "host": host["name"], "at": time.time(),
                                 "code": proc.returncode})
                    host["proc"] = None
            time.sleep(0.1)

    # ---- the faults -----------------------------------------------------------------------

    def upstream_mode(self, mode, seconds, **extra):
        query = "&".join("%s=%s" % kv for kv in extra.items())
        http_call(self.fake_port, "POST", "/_fake/mode?id=*&mode=%s%s"
                  % (mode, "&" + query if query else ""))
        self.fault("upstream_" + mode.replace("-", "_"), seconds=seconds, **extra)
        time.sleep(seconds)
        http_call(self.fake_port, "POST", "/_fake/mode?id=*&mode=ok")
        if mode == "hold":
            http_call(self.fake_port, "POST", "/_fake/release")
        self.fault("upstream_ok")

    def new_versions(self):
        ids = self.rng.sample(range(20), 5)
        for i in ids:
            http_call(self.fake_port, "POST", "/_fake/version?id=c4a05000-0000-4000-8000-%012x" % i)
        self.fault("new_version", ids=ids)

    def kill_master(self):
        port = self.current_master()
        proc = self.redis.get(port)
        if not proc:
            return
        proc.kill()
        proc.wait()
        self.fault("redis_killed", port=port)
        def back():
            time.sleep(3)
            if not self.stopping:
                self.start_redis(port)  # the sentinels make it a replica of the new master
                self.fault("redis_restarted", port=port)
        threading.Thread(target=back, daemon=True).start()

    def redis_sleep(self):
        port = self.current_master()
        def sleep():
            try:
                redis_call(port, "DEBUG", "SLEEP", "0.5", timeout=5)
            except OSError:
                pass  # the master was killed and not yet replaced: nothing to put to sleep
        threading.Thread(target=sleep, daemon=True).start()
        self.fault("redis_sleep", port=port, seconds=0.5)

    def kill_host(self):
        host = self.rng.choice(self.hosts)
        if not host.get("proc"):
            return
        host["killed"] = True
        host["proc"].kill()
        host["proc"].wait()
        self.fault("host_killed", host=host["name"])
        started = time.monotonic()
        if self.rng.random() < 0.5:  # a purge it cannot hear: it must catch up once back
            self.purge(False, avoid=host)
        time.sleep(max(0, 1 - (time.monotonic() - started)))
        host["killed"] = False
        self.launch(host)
        self.fault("host_restarted", host=host["name"])

    def reload_host(self):
        host = self.rng.choice(self.hosts)
        if not host.get("proc"):
            return
        host["reload"] += 1
        self.write_conf(host)
        host["proc"].send_signal(signal.SIGHUP)
        k = host["reload"] % 2
        self.fault("sighup", host=host["name"], ttl=TTL[k],
                   stale_while_revalidate=STALE_WHILE_REVALIDATE[k])

    def purge(self, everything, avoid=None):
        host = self.rng.choice([h for h in self.hosts if h is not avoid])
        enrollment = None if everything else "c4a05000-0000-4000-8000-%012x" % self.rng.randrange(20)
        if enrollment:
            # Why an admin purges: the enrollment changed. Without a new version a copy kept past
            # the purge would be the same version as a fetch after it, and no rule could see it.
            http_call(self.fake_port, "POST", "/_fake/version?id=" + enrollment)
        sent = time.time()
        try:
            status, body = http_call(host["port"], "DELETE",
                                     "/cache" if everything else "/cache/enrollments/" + enrollment)
        except OSError as e:
            self.fault("purge_failed", host=host["name"], error=str(e))
            return
        answer = {}
        try:
            answer = json.loads(body)
        except ValueError:
            pass
        self.record({"kind": "purge", "host": host["name"], "id": enrollment, "sent": sent,
                     "acked": time.time(), "status": status, "shared": answer.get("shared")})

    def disconnecting_clients(self):
        for _ in range(20):
            host = self.rng.choice(self.hosts)
            try:
                s = socket.create_connection(("127.0.0.1", host["port"]), timeout=1)
                s.sendall(b"GET /v1/enrollments/c4a05000-0000-4000-8000-%012x HTTP/1.1\r\n"
                          b"Host: localhost\r\n\r\n" % self.rng.randrange(1500))
                if self.rng.random() < 0.5:
                    s.recv(10)  # the first bytes of the answer, then gone
                s.close()
            except OSError:
                pass
        self.fault("clients_disconnected", count=20)

    def schedule(self):
        faults = [
            lambda: self.upstream_mode("500", 2),
            lambda: (http_call(self.fake_port, "POST", "/_fake/retry-after?seconds=1"),
                     self.upstream_mode("429", 2)),
            lambda: self.upstream_mode("slow", 2, delay_ms=TIMEOUT_MS + 500),
            lambda: self.upstream_mode("hold", 2),
            lambda: self.upstream_mode("garbage", 1.5),
            lambda: self.upstream_mode("wrong-id", 1.5),
            lambda: self.upstream_mode("reset", 1.5),
            self.new_versions,
            self.new_versions,
            self.kill_master,
            self.redis_sleep,
            self.kill_host,
            self.reload_host,
            lambda: self.purge(False),
            lambda: self.purge(False),
            lambda: self.purge(True),
            self.disconnecting_clients,
        ]
        deadline = time.monotonic() + self.seconds - 3  # the last seconds without a new fault
        while time.monotonic() < deadline:
            time.sleep(self.rng.uniform(1, 2.5))
            self.rng.choice(faults)()

    # ---- the run --------------------------------------------------------------------------

    def clients(self):
        hosts = ["%d=%d" % (h["name"], h["port"]) for h in self.hosts]
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos_client.py")
        root_out = os.path.join(self.work, "clients-root.jsonl")
        other_out = os.path.join(self.work, "clients-other.jsonl")
        for path in (root_out, other_out):
            open(path, "w").close()
            os.chmod(path, 0o666)
        args = [str(self.seconds), str(RATE), str(self.seed)] + hosts
        procs = [subprocess.Popen([sys.executable, script, root_out] + args)]
        # Debian's interpreter for the unprivileged one: another (a pyenv under /root) may not
        # be reachable by uid 65534.
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        copy = os.path.join(self.work, "chaos_client.py")  # the checkout may be out of its reach
        shutil.copy(script, copy)
        os.chmod(copy, 0o644)
        other = [python, copy, other_out, str(self.seconds), str(RATE),
                 str(self.seed + 1)] + hosts + ["--admin-attempts"]
        if os.getuid() == 0 and shutil.which("setpriv"):
            other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + other
        else:
            print("chaos: not root: both clients run as uid %d" % os.getuid(), file=sys.stderr)
        procs.append(subprocess.Popen(other))
        return procs, [root_out, other_out]

    def run(self):
        self.start_fake()
        self.master_port, replica_port = free_port(), free_port()
        self.start_redis(self.master_port)
        self.start_redis(replica_port, replica_of=self.master_port)
        self.start_sentinels()
        self.start_hosts()
        self.record({"kind": "config", "seed": self.seed, "hosts": HOSTS, "ttl": max(TTL),
                     "stale_while_revalidate": max(STALE_WHILE_REVALIDATE),
                     "stale_if_error": STALE_IF_ERROR, "timeout_ms": TIMEOUT_MS,
                     "shared_timeout_ms": SHARED_TIMEOUT_MS, "max_size": MAX_SIZE,
                     "serve_log": self.serve_log, "seconds": self.seconds})
        self.fault("full_map", max_size=MAX_SIZE)
        watcher = threading.Thread(target=self.watch_hosts, daemon=True)
        watcher.start()
        procs, outputs = self.clients()
        self.schedule()
        for p in procs:
            p.wait()
        http_call(self.fake_port, "POST", "/_fake/mode?id=*&mode=ok")
        http_call(self.fake_port, "POST", "/_fake/release")
        for host in self.hosts:
            if host.get("proc"):
                rss, fds = proc_usage(host["proc"].pid)
                self.record({"kind": "proc", "when": "end", "host": host["name"],
                             "at": time.time(), "pid": host["proc"].pid, "rss_kb": rss, "fds": fds})
        self.stopping = True
        watcher.join()
        for host in self.hosts:
            proc = host.get("proc")
            if not proc:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = "did not stop within 20 s of SIGTERM"
            if code != 0:
                self.record({"kind": "exit", "host": host["name"], "at": time.time(),
                             "code": code, "at_stop": True})
        for proc in self.redis.values():
            proc.kill()
        self.fake.terminate()
        self.fake.wait()
        self.history.close()
        lines = []
        for path in outputs + [self.history_path + ".run"]:
            with open(path) as f:
                lines += [json.loads(l) for l in f if l.strip()]
        lines.sort(key=lambda l: l.get("sent", l.get("at", 0)))
        with open(self.history_path, "w") as f:
            for l in lines:
                f.write(json.dumps(l, separators=(",", ":")) + "\n")
        os.unlink(self.history_path + ".run")
        requests = sum(1 for l in lines if l["kind"] == "request")
        faults = sum(1 for l in lines if l["kind"] == "fault")
        print("chaos: seed %d, %d requests, %d faults, history %s"
              % (self.seed, requests, faults, self.history_path))


def main():
    bin_dir, work, seconds, seed, history = sys.argv[1:6]
    Run(bin_dir, work, float(seconds), int(seed), history).run()


if __name__ == "__main__":
    main()
