#!/usr/bin/env python3
"""bench/fleet's clients.

  fleet_latency.py load SECONDS IDS PORT...   CLIENTS threads per daemon, random ids back to back
                                              for SECONDS; prints the requests made
  fleet_latency.py latency SAMPLES PORT PORT PORT
                                              one request at a time on one kept-alive connection:
                                              local hits, misses answered from Redis, misses that
                                              went upstream; p50, p99 and the worst, in ms
"""
import http.client
import random
import sys
import threading
import time

CLIENTS = 16


def enrollment_id(i):
    return "f1ee7000-0000-4000-8000-%012x" % i


def request(conn, i):
    """GET id i on a kept-alive connection: (status, Cache-Status)."""
    conn.request("GET", "/v1/enrollments/" + enrollment_id(i))
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("Cache-Status") or ""


def ask(conn, i):
    status, cache_status = request(conn, i)
    if status != 200:
        raise SystemExit("fleet: %s answered %d" % (enrollment_id(i), status))
    return cache_status


def load(seconds, ids, ports):
    ports = [p for p in ports for _ in range(CLIENTS)]
    counts = [0] * len(ports)

    def client(k, port):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        rng = random.Random(k)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ask(conn, rng.randrange(ids))
            counts[k] += 1

    threads = [threading.Thread(target=client, args=(k, p)) for k, p in enumerate(ports)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(counts))


def timed(conn, ids, expect=None):
    times = []
    for i in ids:
        start = time.perf_counter_ns()
        status = ask(conn, i)
        times.append((time.perf_counter_ns() - start) / 1e6)
        if expect and not status.startswith(expect):
            raise SystemExit("fleet: expected Cache-Status %s..., got %s" % (expect, status))
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)], times[-1]


def latency(samples, ports):
    a = http.client.HTTPConnection("127.0.0.1", ports[0])
    b = http.client.HTTPConnection("127.0.0.1", ports[1])
    c = http.client.HTTPConnection("127.0.0.1", ports[2])
    base = 10_000_000
    ask(b, base)
    rows = [("local hit (host B)", timed(b, [base] * samples, "flipcached; hit"))]
    shared = range(base + 1, base + 1 + samples)
    for i in shared:
        ask(a, i)
    time.sleep(0.5)  # the write-backs to Redis are not on host A's answers' path
    rows.append(("miss here, hit in Redis (host B)", timed(b, shared, "flipcached-shared; hit")))
    fresh = range(base + 1 + samples, base + 1 + 2 * samples)
    rows.append(("miss everywhere: Redis, lock, upstream (host C)", timed(c, fresh, "flipcached; fwd=uri-miss")))
    print("  %-48s %8s %8s %8s" % ("", "p50 ms", "p99 ms", "worst ms"))
    for name, (p50, p99, worst) in rows:
        print("  %-48s %8.3f %8.3f %8.3f" % (name, p50, p99, worst))
    added = rows[1][1][0] - rows[0][1][0]
    print("  a miss answered from Redis adds %.3f ms at p50 to a local hit" % added)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(float(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    else:
        latency(int(sys.argv[2]), [int(p) for p in sys.argv[3:6]])
