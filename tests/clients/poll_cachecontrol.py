#!/usr/bin/python3
"""Polls one enrollment URL with Python's requests under CacheControl (Debian's
python3-cachecontrol), a real client library that caches and revalidates as RFC 9111 says.

Usage: poll_cachecontrol.py URL POLLS SECONDS_BETWEEN
Prints one JSON line: each poll's status as requests saw it, whether CacheControl answered it
from its own cache, and whether every body was the same."""
import json
import sys
import time

import requests
from cachecontrol import CacheControl


def main():
    url, polls, between = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    session = CacheControl(requests.Session())
    statuses, from_cache, bodies = [], [], set()
    for i in range(polls):
        if i:
            time.sleep(between)
        response = session.get(url, timeout=10)
        statuses.append(response.status_code)
        from_cache.append(bool(getattr(response, "from_cache", False)))
        bodies.add(response.content)
    print(json.dumps({"statuses": statuses, "from_cache": from_cache,
                      "same_body": len(bodies) == 1}))


if __name__ == "__main__":
    main()
