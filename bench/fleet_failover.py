#!/usr/bin/env python3
"""bench/fleet's failover run (issue 27).

  fleet_failover.py PORT_A PORT_B UPSTREAM_PORT MASTER_PID REPLICA_PORT SENTINEL_PORT

Two daemons share through a Redis master that Redis Sentinel watches. For 3 s, then through the
failover, a client asks each new id of host A and then of host B, back to back (a new id every
round); the master is killed (SIGKILL) at the 3 s mark. Prints, from the kill:
  - when the sentinels named the replica (SENTINEL get-master-addr-by-name, polled);
  - when host B first answered a new id from the shared tier again (Cache-Status
    "flipcached-shared; hit"): the fleet shares through the new master;
  - the upstream requests per new id from the kill to that first shared hit (2: each host asked
    for itself; 1: shared), and before the kill (1);
  - every answer that was not 200 (the target is none).
"""
import http.client
import os
import signal
import socket
import sys
import time
import json
import threading


from fleet_latency import request as ask  # bench/ is the script's directory: on sys.path

FIRST_ID = 1 << 40  # ids of their own: far from the ones bench/fleet's other runs asked


def upstream_total(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/_fake/stats")
    total = json.loads(conn.getresponse().read())["total"]
    conn.close()
    return total


def sentinel_master(port):
    """The master's port the sentinel names, or None."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$4\r\nflip\r\n")
        data = s.recv(4096).decode()
    parts = data.split("\r\n")
    return int(parts[4]) if len(parts) > 4 and parts[0] == "*2" else None


def main():
    port_a, port_b, upstream, master_pid, replica_port, sentinel_port = map(int, sys.argv[1:7])
    a = http.client.HTTPConnection("127.0.0.1", port_a)
    b = http.client.HTTPConnection("127.0.0.1", port_b)
    promoted_at = []

    def watch_sentinel(killed_at):
        while time.monotonic() - killed_at < 60:
            try:
                if sentinel_master(sentinel_port) == replica_port:
                    promoted_at.append(time.monotonic() - killed_at)
                    return
            except OSError:
                pass
            time.sleep(0.02)

    failed = answers = 0
    n = FIRST_ID
    start = time.monotonic()
    before_ids = 0
    before_requests = upstream_total(upstream)
    while time.monotonic() - start < 3:
        for conn in (a, b):
            status, _ = ask(conn, n)
            answers += 1
            failed += status != 200
        n += 1
        before_ids += 1
    at_kill = upstream_total(upstream)
    before_per_id = (at_kill - before_requests) / before_ids
    os.kill(master_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    threading.Thread(target=watch_sentinel, args=(killed_at,), daemon=True).start()
    first_shared = None
    during_ids = 0
    while time.monotonic() - killed_at < 60:
        status_a, _ = ask(a, n)
        status_b, cache_status = ask(b, n)
        answers += 2
        failed += (status_a != 200) + (status_b != 200)
        n += 1
        during_ids += 1
        if promoted_at and cache_status.startswith("flipcached-shared; hit"):
            first_shared = time.monotonic() - killed_at
            break
    during_per_id = (upstream_total(upstream) - at_kill) / max(during_ids, 1)
    promoted = "%.2f s" % promoted_at[0] if promoted_at else "never"
    shared = "%.2f s" % first_shared if first_shared is not None else "never (60 s)"
    print("  master killed: sentinels named the replica after %s; first shared hit on it after %s"
          % (promoted, shared))
    print("  upstream requests per new id: %.2f before the kill, %.2f from the kill to that hit"
          " (%d ids; 2 = each host for itself)" % (before_per_id, during_per_id, during_ids))
    print("  answers not 200: %d of %d  [target 0]" % (failed, answers))
    if failed or first_shared is None:
        sys.exit(1)


main()
