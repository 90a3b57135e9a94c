#!/usr/bin/env python3
"""bench/chaos's clients: one process per uid (bench/chaos.py starts the unprivileged one under
setpriv), writing one JSON line per request to OUT.

  chaos_client.py OUT SECONDS RATE SEED HOST=PORT... [--admin-attempts]

RATE requests a second in all, spread over WORKERS threads, each asking a random host for a
random id: HOT ids get 60% of the requests, the rest the whole space of IDS. A line:

  {"kind":"request","host":H,"uid":U,"id":ID,"sent":T,"answered":T,"status":S,
   "cache_status":C,"age":A,"body_id":ID,"version":V,"error":E}

(times in Unix seconds; status 0 with error when no HTTP answer came; body_id and version
null unless a 200 carried an enrollment). With --admin-attempts, every 2 s it also tries the
admin routes (GET /cache, DELETE /cache/enrollments/ID), as {"kind":"admin",...} lines.
"""
import calendar
import http.client
import json
import os
import random
import sys
import threading
import time

IDS = 1500
HOT = 20
WORKERS = 8
TIMEOUT = 30  # seconds: far past any bound; a request still unanswered then is recorded lost
VERSION_EPOCH = 1893456000  # 2030-01-01T00:00:00Z: the fake's version N is this plus N seconds


def enrollment_id(i):
    return "c4a05000-0000-4000-8000-%012x" % i


def version_of(body):
    """The fake's version of an enrollment body (its updated_at), or None."""
    updated = body.get("updated_at")
    if not isinstance(updated, str):
        return None
    if updated == "2019-08-24T14:15:22Z":
        return 0
    try:
        return calendar.timegm(time.strptime(updated, "%Y-%m-%dT%H:%M:%SZ")) - VERSION_EPOCH
    except ValueError:
        return None


class Out:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, line):
        with self.lock:
            self.file.write(json.dumps(line, separators=(",", ":")) + "\n")


def one_request(host, method, path, uid, kind, out):
    name, port = host
    line = {"kind": kind, "host": name, "uid": uid, "method": method, "path": path,
            "id": path.rsplit("/", 1)[1] if kind == "request" else None, "sent": time.time(), "answered": None, "status": 0, "cache_status": None,
            "age": None, "body_id": None, "version": None, "error": None}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request(method, path)
        response = conn.getresponse()
        data = response.read()
        line["status"] = response.status
        line["cache_status"] = response.getheader("Cache-Status")
        age = response.getheader("Age")
        line["age"] = int(age) if age and age.isdigit() else None
        if response.status == 200 and kind == "request":
            try:
                body = json.loads(data)
                line["body_id"] = body.get("id") if isinstance(body, dict) else None
                line["version"] = version_of(body) if isinstance(body, dict) else None
            except ValueError:
                line["error"] = "a 200 whose body is not JSON"
        conn.close()
    except (OSError, http.client.HTTPException) as e:
        line["error"] = "%s: %s" % (type(e).__name__, e)
    line["answered"] = time.time()
    out.write(line)


def worker(k, ports, rate, seconds, seed, uid, out):
    rng = random.Random(seed * 1000 + k)
    interval = WORKERS / rate
    start = time.monotonic() + rng.random() * interval
    n = 0
    while True:
        due = start + n * interval
        now = time.monotonic()
        if due - start > seconds:
            return
        if due > now:
            time.sleep(due - now)
        n += 1
        i = rng.randrange(HOT) if rng.random() < 0.6 else rng.randrange(IDS)
        one_request(rng.choice(ports), "GET", "/v1/enrollments/" + enrollment_id(i), uid,
                    "request", out)


def admin_attempts(ports, seconds, seed, uid, out):
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        port = rng.choice(ports)
        one_request(port, "GET", "/cache?limit=5", uid, "admin", out)
        one_request(port, "DELETE", "/cache/enrollments/" + enrollment_id(rng.randrange(HOT)),
                    uid, "admin", out)
        time.sleep(2)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Out(args[0])
    seconds, rate, seed = float(args[1]), float(args[2]), int(args[3])
    ports = [(int(a.split("=")[0]), int(a.split("=")[1])) for a in args[4:]]
    uid = os.getuid()
    threads = [threading.Thread(target=worker, args=(k, ports, rate, seconds, seed, uid, out))
               for k in range(WORKERS)]
    if "--admin-attempts" in sys.argv:
        threads.append(threading.Thread(target=admin_attempts, args=(ports, seconds, seed, uid, out)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
