/* fixture: what every integration suite shares. One fake upstream and one daemon per test
 * (Criterion runs each test in a process of its own, so these are per test), and the helpers
 * over them; a suite that needs more writes its own next to them. */
#ifndef FLIPCACHED_TEST_FIXTURE_H
#define FLIPCACHED_TEST_FIXTURE_H

#include <stddef.h>

#include "harness.h"

extern struct fake_upstream fake;
extern struct flipcached_proc daemon_proc;

/* The fake and a daemon sharing a new random credential (options NULL: the defaults). */
void start_with(const struct daemon_options *options);
/* A .fini: stops both, expecting the daemon to exit 0, and removes its directory. */
void stop_all(void);
/* GET {daemon}/v1/enrollments/{id}. */
void get_enrollment(const char *id, struct http_response *response);
/* A number of the daemon's /stats, or -1. */
long stat_of(const char *field);
/* The daemon's URL of path. */
void url_of(char *url, size_t len, const char *path);
/* With [upstream] max_connections = 1: a request for id, which the fake holds hold_ms, sent on a
 * connection of its own and on the upstream's wire when this returns; then a reload lowers
 * timeout_ms from the config's `timeout_ms` to 500 for the fetches after it. Returns the
 * request's socket, for expect_held_answer_200. */
int hold_the_upstream_connection(const char *id, unsigned hold_ms, unsigned timeout_ms);
/* The held request's whole answer is a 200: the first fetch kept its connection. Closes fd. */
void expect_held_answer_200(int fd);

#endif
