#!/usr/bin/env python3
"""bench/paced_misses.py URL RATE SECONDS: one user's misses at a modest pace, for bench/fairness.

Asks RATE new ids a second (each one nobody asked before, from a random base) for SECONDS over
one kept-alive connection, each request at its slot of the schedule (or at once when late), and
prints "COUNT OK P50_MS P99_MS": how many were asked, how many answered 200, and the median and
99th percentile of their latency in milliseconds."""
import http.client
import random
import sys
import time
import urllib.parse


def main():
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    base = random.randrange(0x10000000, 0x7fffffff)
    latencies, ok = [], 0
    start = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        sent = time.monotonic()
        connection.request("GET", "/v1/enrollments/%08x-0000-4000-8000-%012x" % (base, i))
        response = connection.getresponse()
        response.read()
        latencies.append((time.monotonic() - sent) * 1000)
        ok += response.status == 200
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print("%d %d %.1f %.1f" % (count, ok, p50, p99))


if __name__ == "__main__":
    main()
