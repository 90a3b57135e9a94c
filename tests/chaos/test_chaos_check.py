#!/usr/bin/env python3
"""bench/chaos_check against doctored histories: a clean one passes, and each fault the model
forbids (a wrong body, an invented version, a hang, a lost request, a post-purge old version, a
stale answer beyond its window, an age that lies, an unprivileged admin success, an unexpected
exit, a leak) is caught by its rule. Run by ctest as chaos_check."""
import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "chaos_check")
A = "c4a05000-0000-4000-8000-000000000001"
B = "c4a05000-0000-4000-8000-000000000002"
T0 = 1800000000.0


def request(host, enrollment_id, sent, version, age=0, status=200, body_id=None, uid=0, took=0.01,
            cache_status=None):
    """A client's line; a hit by default, its ttl= the freshness left of a ttl of 5 s."""
    if cache_status is None:
        cache_status = "flipcached; hit; ttl=%d" % (5 - age)
    return {"kind": "request", "host": host, "uid": uid, "id": enrollment_id, "sent": sent,
            "answered": sent + took, "status": status, "cache_status": cache_status, "age": age,
            "body_id": enrollment_id if body_id is None and status == 200 else body_id,
            "version": version if status == 200 else None, "error": None}


class ChaosCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.serve_log = os.path.join(self.dir, "served.jsonl")
        self.served = [
            {"kind": "served", "id": A, "version": 0, "at": T0 + 1.0},
            {"kind": "served", "id": B, "version": 0, "at": T0 + 1.0},
            {"kind": "version", "id": A, "version": 1, "at": T0 + 20.0},
            {"kind": "served", "id": A, "version": 1, "at": T0 + 21.0},
        ]
        self.history = [
            {"kind": "config", "hosts": 2, "ttl": 5, "stale_while_revalidate": 5,
             "stale_if_error": 20, "timeout_ms": 1000, "shared_timeout_ms": 200,
             "serve_log": self.serve_log},
            {"kind": "proc", "when": "start", "host": 0, "at": T0, "pid": 1, "rss_kb": 8000, "fds": 20},
            {"kind": "proc", "when": "start", "host": 1, "at": T0, "pid": 2, "rss_kb": 8000, "fds": 20},
            request(0, A, T0 + 1.0, 0, cache_status="flipcached; fwd=uri-miss; stored"),
            request(1, A, T0 + 3.0, 0, age=2),
            request(0, B, T0 + 4.0, 0, age=3),
            request(1, A, T0 + 21.0, 1, cache_status="flipcached; fwd=uri-miss; stored"),
            {"kind": "admin", "host": 0, "uid": 65534, "method": "DELETE", "path": "/cache",
             "id": None, "sent": T0 + 5, "answered": T0 + 5.01, "status": 403},
            {"kind": "proc", "when": "end", "host": 0, "at": T0 + 30, "pid": 1, "rss_kb": 9000, "fds": 22},
            {"kind": "proc", "when": "end", "host": 1, "at": T0 + 30, "pid": 2, "rss_kb": 9000, "fds": 22},
        ]

    def run_check(self, history=None, served=None):
        with open(self.serve_log, "w") as f:
            for l in served if served is not None else self.served:
                f.write(json.dumps(l) + "\n")
        path = os.path.join(self.dir, "history.jsonl")
        with open(path, "w") as f:
            for l in history if history is not None else self.history:
                f.write(json.dumps(l) + "\n")
        done = subprocess.run([sys.executable, CHECK, path], capture_output=True, text=True)
        return done.returncode, done.stdout

    def expect_caught(self, rule, history, served=None):
        code, out = self.run_check(history, served)
        self.assertEqual(code, 1, out)
        self.assertIn("(%s)" % rule, out)
        self.assertIn("1 violations", out)

    def doctored(self, line):
        return copy.deepcopy(self.history) + [line]

    def test_a_clean_history_has_no_violation(self):
        code, out = self.run_check()
        self.assertEqual(code, 0, out)
        self.assertIn("0 violations", out)

    def test_a_wrong_body_is_caught(self):
        self.expect_caught("a", self.doctored(request(0, A, T0 + 6, 0, age=4, body_id=B)))

    def test_a_version_the_upstream_never_served_is_caught(self):
        self.expect_caught("a", self.doctored(request(0, B, T0 + 6, 7, age=4)))

    def test_a_version_answered_before_the_upstream_served_it_is_caught(self):
        self.expect_caught("a", self.doctored(request(0, A, T0 + 15, 1, age=0)))

    def test_a_stale_answer_beyond_its_window_is_caught(self):
        # ttl 5 + stale_if_error 20: an Age of 29 is past any window.
        self.expect_caught("b", self.doctored(request(0, B, T0 + 30, 0, age=29)))

    def test_a_fresh_hit_older_than_the_ttl_is_caught(self):
        # Within the stale windows, but Cache-Status calls it fresh (ttl=2) at Age 9 > ttl 5.
        served = self.served + [{"kind": "served", "id": B, "version": 0, "at": T0 + 5.0}]
        self.expect_caught("b", self.doctored(
            request(0, B, T0 + 14, 0, age=9, cache_status="flipcached; hit; ttl=2")), served)

    def test_an_age_that_hides_an_older_copy_is_caught(self):
        # Version 0 of A was served at T0 + 1 only; claiming Age 1 at T0 + 12 is a lie.
        self.expect_caught("b", self.doctored(request(0, A, T0 + 12, 0, age=1)))

    def test_a_post_purge_old_version_is_caught_on_the_purging_host(self):
        purge = {"kind": "purge", "host": 0, "id": A, "sent": T0 + 9.9, "acked": T0 + 10.0,
                 "status": 200, "shared": {"deleted": 1, "hosts_notified": 2}}
        self.expect_caught("c", self.doctored(purge) + [request(0, A, T0 + 11, 0, age=10)])

    def test_a_post_purge_old_version_is_caught_on_another_host_that_heard_it(self):
        purge = {"kind": "purge", "host": 0, "id": None, "sent": T0 + 9.9, "acked": T0 + 10.0,
                 "status": 200, "shared": {"deleted": 3, "hosts_notified": 2}}
        self.expect_caught("c", self.doctored(purge) + [request(1, A, T0 + 11, 0, age=10)])

    def test_after_a_purge_a_version_served_again_is_fine(self):
        purge = {"kind": "purge", "host": 0, "id": A, "sent": T0 + 9.9, "acked": T0 + 10.0,
                 "status": 200, "shared": {"deleted": 1, "hosts_notified": 2}}
        served = self.served + [{"kind": "served", "id": A, "version": 0, "at": T0 + 10.5}]
        history = self.doctored(purge) + [request(1, A, T0 + 11, 0, age=0)]
        code, out = self.run_check(history, served)
        self.assertEqual(code, 0, out)

    def test_a_purge_the_other_host_did_not_hear_binds_only_its_own_host(self):
        purge = {"kind": "purge", "host": 0, "id": A, "sent": T0 + 9.9, "acked": T0 + 10.0,
                 "status": 200, "shared": {"error": "the shared tier is unavailable"}}
        code, out = self.run_check(self.doctored(purge) + [request(1, A, T0 + 11, 0, age=10)])
        self.assertEqual(code, 0, out)

    def restarted_after_a_purge(self, request_at, purger_killed_at=None):
        """Host 1 killed at T0 + 9, host 0's purge of A at T0 + 10 (heard by the one host up),
        host 1 back at T0 + 12, then asked for A at request_at and answering the pre-purge copy."""
        history = self.doctored({"kind": "fault", "fault": "host_killed", "host": 1, "at": T0 + 9})
        history += [{"kind": "purge", "host": 0, "id": A, "sent": T0 + 9.9, "acked": T0 + 10.0,
                     "status": 200, "shared": {"deleted": 1, "hosts_notified": 1}},
                    {"kind": "fault", "fault": "host_restarted", "host": 1, "at": T0 + 12}]
        if purger_killed_at:
            history += [{"kind": "fault", "fault": "host_killed", "host": 0, "at": purger_killed_at},
                        {"kind": "fault", "fault": "host_restarted", "host": 0, "at": T0 + 19}]
        age = int(request_at - T0 - 1)
        return history + [request(1, A, request_at, 0, age=age,
                                  cache_status="flipcached; hit; ttl=%d" % (5 - age))]

    def test_a_host_restarted_after_a_purge_is_bound_once_it_caught_up(self):
        self.expect_caught("c", self.restarted_after_a_purge(T0 + 16))

    def test_a_host_restarted_after_a_purge_may_serve_its_copy_until_it_caught_up(self):
        code, out = self.run_check(self.restarted_after_a_purge(T0 + 14))
        self.assertEqual(code, 0, out)

    def test_a_restarted_host_is_not_bound_when_the_purging_host_died_before_it_caught_up(self):
        code, out = self.run_check(self.restarted_after_a_purge(T0 + 16, purger_killed_at=T0 + 11))
        self.assertEqual(code, 0, out)

    def test_a_history_of_too_few_requests_fails_when_a_least_is_asked(self):
        path = os.path.join(self.dir, "history.jsonl")
        self.run_check()
        done = subprocess.run([sys.executable, CHECK, path, "--min-requests", "5"],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertIn("only 4 requests, fewer than the 5 asked for", done.stdout)
        done = subprocess.run([sys.executable, CHECK, path, "--min-requests", "4"],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stdout)

    def test_a_hang_is_caught(self):
        # Bound: 3 x 1 s + 4 x 0.2 s + 1 s = 4.8 s.
        self.expect_caught("d", self.doctored(request(0, B, T0 + 6, 0, age=11, took=6.0)))

    def test_a_request_never_answered_is_caught(self):
        line = request(0, B, T0 + 6, 0, age=5)
        line["answered"] = None
        self.expect_caught("d", self.doctored(line))

    def test_no_answer_from_a_host_that_was_up_is_caught_and_from_a_killed_one_is_not(self):
        lost = request(1, B, T0 + 6, None, status=0)
        lost["error"] = "ConnectionRefusedError"
        self.expect_caught("d", self.doctored(lost))
        history = self.doctored({"kind": "fault", "fault": "host_killed", "host": 1, "at": T0 + 5.5})
        history += [lost, {"kind": "fault", "fault": "host_restarted", "host": 1, "at": T0 + 7}]
        code, out = self.run_check(history)
        self.assertEqual(code, 0, out)

    def test_an_unprivileged_admin_success_is_caught(self):
        self.expect_caught("e", self.doctored(
            {"kind": "admin", "host": 1, "uid": 65534, "method": "GET", "path": "/cache",
             "id": None, "sent": T0 + 7, "answered": T0 + 7.01, "status": 200}))

    def test_an_unexpected_exit_is_caught(self):
        self.expect_caught("f", self.doctored({"kind": "exit", "host": 1, "at": T0 + 8, "code": -11}))

    def test_a_leak_is_caught(self):
        history = [l for l in self.history if not (l["kind"] == "proc" and l["when"] == "end"
                                                   and l["host"] == 1)]
        history.append({"kind": "proc", "when": "end", "host": 1, "at": T0 + 30, "pid": 2,
                        "rss_kb": 9000, "fds": 80})
        self.expect_caught("f", history)


if __name__ == "__main__":
    unittest.main()
