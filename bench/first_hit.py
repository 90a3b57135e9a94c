#!/usr/bin/env python3
"""bench/first_hit.py PORT PATH START_NS: asks for PATH on 127.0.0.1:PORT in a tight loop until
the answer's Cache-Status says it was a cache hit; prints the milliseconds since START_NS (the
time.time_ns() at which the server was started) and how many answers before it were not hits
(0: hits from the first request). Gives up after 600 s."""
import socket
import sys
import time

port, path, start_ns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
not_hits = 0
while time.time_ns() - start_ns < 600e9:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    except OSError:
        time.sleep(0.001)
        continue
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("cache-status:") and "hit" in line:
            print("%.1f %d" % ((time.time_ns() - start_ns) / 1e6, not_hits))
            sys.exit(0)
    not_hits += 1
    time.sleep(0.001)
sys.exit("no hit within 600 s")
