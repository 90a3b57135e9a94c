/* Fair shares of the upstream and timeouts that keep their word, against the fake upstream: a
 * lone user's cold start with the defaults, another uid's flood (65534, through setpriv and
 * curl), background refreshes during a flood, and upstreams that are silent or trickle. Who gets
 * a slot is tested by counting requests at an upstream that holds its answers until the test
 * releases them ("hold"), never by timing; latency belongs in bench/fairness. The one duration
 * asserted is a lower bound (a 504 no earlier than timeout_ms). */
#include <criterion/criterion.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define NOBODY "--reuid=65534 --regid=65534 --clear-groups"

TestSuite(fairness, .fini = stop_all, .timeout = 180);
TestSuite(timeouts, .fini = stop_all, .timeout = 60);

/* The id of flow f's i-th miss: distinct across flows. */
static void id_of(unsigned flow, unsigned i, char id[40]) {
  snprintf(id, 40, "%08x-0000-4000-8000-%012x", flow, i);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One GET as root; its status, and its duration in *ms. */
static long timed_get(const char *id, long *ms) {
  struct http_response response;
  long start = now_ms();
  get_enrollment(id, &response);
  *ms = now_ms() - start;
  long status = response.status;
  http_response_free(&response);
  return status;
}

/* `connections` curls as `identity` (setpriv's options; NULL: root), each asking
 * `per_connection` new ids of flow `flow` in turn over one kept-alive connection (one curl with
 * a config file of URLs), started in the background; pclose gives every answer's status, one a
 * line. */
static FILE *flood(const char *identity, unsigned flow, unsigned connections,
                   unsigned per_connection) {
  char list[400];
  snprintf(list, sizeof(list), "%s/flood-%u", daemon_proc.dir, flow);
  FILE *configs = fopen(list, "w");
  cr_assert_not_null(configs);
  for (unsigned c = 0; c < connections; c++) {
    char path[440];
    snprintf(path, sizeof(path), "%s-%u.curl", list, c);
    fprintf(configs, "%s\n", path);
    FILE *config = fopen(path, "w");
    cr_assert_not_null(config);
    for (unsigned i = 0; i < per_connection; i++) {
      char id[40];
      id_of(flow, c * per_connection + i, id);
      fprintf(config, "url = \"%s/v1/enrollments/%s\"\noutput = /dev/null\n", daemon_proc.url, id);
    }
    fclose(config);
  }
  fclose(configs);
  char command[1200];
  snprintf(command, sizeof(command),
           "chmod -R a+rX %s; setpriv %s xargs -P %u -n 1 curl -s -w '%%{http_code}\\n' -K < %s",
           daemon_proc.dir, identity ? identity : "--", connections, list);
  FILE *pipe = popen(command, "r");
  cr_assert_not_null(pipe);
  return pipe;
}

static void count_statuses(FILE *pipe, int *ok, int *other) {
  char line[32];
  *ok = *other = 0;
  while (fgets(line, sizeof(line), pipe)) {
    if (atoi(line) == 200)
      (*ok)++;
    else
      (*other)++;
  }
  pclose(pipe);
}

/* The daemon has had at least n fetches waiting for a slot (the flood is under way; the count
 * dips for a moment each time a wave of answers frees the slots). */
static void wait_for_waiting(long n) {
  long seen = 0;
  for (int i = 0; i < 500 && seen < n; i++) {
    seen = stat_of("fetches_waiting");
    if (seen < n)
      pause_ms(10);
  }
  cr_assert_geq(seen, n, "the flood never filled the slots");
}

/* The cold start of one app: 3,000 new ids in turn over one kept-alive connection, with the
 * daemon's defaults (no miss_rate_per_user line). Before, 20 a second: 28 answered, 2,972 429. */
Test(fairness, one_users_3000_sequential_new_ids_are_all_200_with_the_defaults) {
  start_with(NULL);
  int ok, other;
  count_statuses(flood(NULL, 1, 1, 3000), &ok, &other);
  cr_expect_eq(ok, 3000, "%d of 3000 answered 200, %d not", ok, other);
  cr_expect_eq(stat_of("refused_miss_quota"), 0);
  cr_expect_eq(fake_stat(&fake, "total"), 3000);
  cr_expect_eq(fake_stat(&fake, "connections"), 1, "one upstream connection, kept alive");
}

/* A lone user floods 3,200 new ids over 32 connections at an upstream that takes 20 ms an
 * answer: its misses wait for the 16 slots, in its own queue, and are served. */
Test(fairness, a_lone_users_flood_over_32_connections_is_served) {
  start_with(NULL);
  fake_set_mode(&fake, "*", "slow", 20);
  int ok, other;
  count_statuses(flood(NOBODY, 2, 32, 100), &ok, &other);
  cr_expect_leq(other, 32, "%d of %d refused (at most 1%%)", other, ok + other);
  cr_expect_eq(ok + other, 3200);
  cr_expect_gt(stat_of("fetches_waited"), 0, "the slots were all busy at times");
  cr_expect_leq(fake_stat(&fake, "held_most"), 16, "never more than the 16 slots upstream");
}

/* Waits (up to 10 s) until the daemon's /stats field and the fake's "held" are both as given. */
static void wait_for_waiting_and_held(long waiting, long held) {
  long seen_waiting = -1, seen_held = -1;
  for (int i = 0; i < 1000; i++) {
    seen_waiting = stat_of("fetches_waiting");
    seen_held = fake_stat(&fake, "held");
    if (seen_waiting == waiting && seen_held == held)
      return;
    pause_ms(10);
  }
  cr_assert_fail("fetches_waiting %ld (not %ld), the upstream holding %ld (not %ld)",
                 seen_waiting, waiting, seen_held, held);
}

/* Waits (up to 10 s) until the fake has received `total` enrollment requests in all. */
static void wait_for_upstream_total(long total) {
  long seen = 0;
  for (int i = 0; i < 1000 && (seen = fake_stat(&fake, "total")) < total; i++)
    pause_ms(10);
  cr_assert_eq(seen, total, "the upstream received %ld requests, not %ld", seen, total);
}

/* uid 65534 floods new ids over 64 connections at an upstream that holds every answer until the
 * test releases it: the flood holds the 16 slots and 48 of its misses wait in its queue. Each
 * time root asks a miss, it waits too; one of the flood's answers is released, and the slot that
 * frees goes to root's miss, ahead of the 48 queued before it (first come first served, root's
 * would be sent after all of them: 48 releases later). Counted in requests, never timed, so a
 * slow machine cannot fail it; what the shares buy in latency is measured in bench/fairness. */
Test(fairness, one_users_flood_does_not_delay_another_users_misses) {
  struct daemon_options options = {.timeout_ms = 30000};
  start_with(&options);
  fake_set_mode(&fake, "*", "hold", 0);
  enum { SAMPLES = 5, CONNECTIONS = 64, PER_CONNECTION = 3, SLOTS = 16 };
  FILE *pipe = flood(NOBODY, 4, CONNECTIONS, PER_CONNECTION);
  for (unsigned i = 0; i < SAMPLES; i++) {
    /* Every one of the flood's connections has a miss in the daemon: 16 sent, 48 waiting. */
    wait_for_waiting_and_held(CONNECTIONS - SLOTS, SLOTS);
    char id[40];
    id_of(3, i, id);
    int root = raw_ask_enrollment(daemon_proc.port, id);
    wait_for_waiting_and_held(CONNECTIONS - SLOTS + 1, SLOTS); /* root's waits behind them */
    long sent = fake_stat(&fake, "total");
    cr_assert_eq(fake_release(&fake, NULL, 1), 1); /* the flood's oldest: one slot frees */
    wait_for_upstream_total(sent + 1);
    cr_expect_eq(fake_count(&fake, id), 1, "root's miss %u took the slot that freed, ahead of "
                 "the flood's %d waiting", i, CONNECTIONS - SLOTS);
    cr_assert_eq(fake_release(&fake, id, 0), fake_count(&fake, id));
    cr_expect_eq(raw_answer_status(root), 200, "root's miss %u", i);
  }
  fake_set_mode(&fake, "*", "ok", 0);
  fake_release(&fake, NULL, 0);
  int ok, other;
  count_statuses(pipe, &ok, &other);
  cr_expect_eq(ok, CONNECTIONS * PER_CONNECTION, "the flood itself is served: %d ok, %d other",
               ok, other);
  cr_expect_eq(fake_stat(&fake, "held_most"), SLOTS, "never more than the 16 slots upstream");
}

/* While uid 65534's flood holds every slot, 20 stale entries are asked (served stale at once):
 * their background refreshes take the background's share, half of the 4 slots, so they are all
 * done while the flood still runs (not starved), and meanwhile the flood still gets about half
 * of the upstream's requests (not starved either). */
Test(fairness, background_refreshes_during_a_client_flood_neither_starve_nor_are_starved) {
  struct daemon_options options = {.ttl = 1, .timeout_ms = 15000,
                                   .extra_upstream = "max_connections = 4\n",
                                   .extra_cache = "stale_while_revalidate = 600\n"
                                                  "refresh_ahead = 0\n"};
  start_with(&options);
  enum { STALE = 20 };
  char stale[STALE][40];
  for (unsigned i = 0; i < STALE; i++) {
    id_of(5, i, stale[i]);
    long ms;
    cr_assert_eq(timed_get(stale[i], &ms), 200);
  }
  pause_ms(2100); /* all stale now, within stale_while_revalidate */
  fake_set_mode(&fake, "*", "slow", 100);
  FILE *pipe = flood(NOBODY, 6, 64, 4);
  wait_for_waiting(32);
  long total_before = fake_stat(&fake, "total");
  for (unsigned i = 0; i < STALE; i++) {
    long ms;
    cr_expect_eq(timed_get(stale[i], &ms), 200, "served stale at once");
  }
  cr_expect_eq(stat_of("background_refreshes"), STALE);
  int refreshed = 0;
  for (int round = 0; round < 1000 && refreshed < STALE; round++) {
    refreshed = 0;
    for (unsigned i = 0; i < STALE; i++)
      refreshed += fake_count(&fake, stale[i]) == 2;
    if (refreshed < STALE)
      pause_ms(10);
  }
  long total_after = fake_stat(&fake, "total");
  int ok, other;
  count_statuses(pipe, &ok, &other);
  long flood_share = total_after - total_before - STALE;
  cr_log_info("refreshes done after %ld upstream requests, %ld of them the flood's",
              total_after - total_before, flood_share);
  cr_expect_eq(refreshed, STALE, "every refresh was sent");
  cr_expect_lt(total_after - 2 * STALE, 64 * 3, "and while the flood still ran (%ld of its "
               "requests upstream)", total_after - 2 * STALE);
  cr_expect_geq(flood_share, STALE / 2, "the flood had %ld requests while %d refreshes were sent",
                flood_share, STALE);
  cr_expect_eq(ok, 64 * 4, "the flood is served: %d ok, %d other", ok, other);
}

/* uid 65534 asks 40 ids in a known order (one connection each, 5 ms apart) at an upstream of 4
 * slots that holds every answer until the test releases it: 36 wait in its queue. Root then asks
 * for the last of them, the 36th in that queue: joining nobody's fetch, root's request moves it
 * to root's own empty queue, so when one of nobody's answers is released the slot that frees
 * goes to it, not to the head of nobody's queue (without the move, 36 releases later). */
Test(fairness, joining_another_users_waiting_fetch_does_not_wait_behind_that_users_queue) {
  struct daemon_options options = {.timeout_ms = 30000, .extra_upstream = "max_connections = 4\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "hold", 0);
  enum { FLOOD = 40, SLOTS = 4 };
  pid_t child = fork();
  cr_assert_geq(child, 0);
  if (child == 0) {
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      _exit(100); /* the death signal after the uid change, which clears it */
    for (unsigned i = 0; i < FLOOD; i++) {
      char id[40];
      id_of(8, i, id);
      raw_ask_enrollment(daemon_proc.port, id); /* kept open until the child ends */
      usleep(5000);
    }
    pause();
    _exit(0);
  }
  wait_for_waiting_and_held(FLOOD - SLOTS, SLOTS);
  char last[40];
  id_of(8, FLOOD - 1, last);
  int root = raw_ask_enrollment(daemon_proc.port, last);
  for (int i = 0; i < 1000 && stat_of("fetches_moved") < 1; i++)
    pause_ms(10);
  cr_expect_eq(stat_of("fetches_moved"), 1);
  long sent = fake_stat(&fake, "total");
  cr_assert_eq(fake_release(&fake, NULL, 1), 1); /* nobody's oldest: one slot frees */
  wait_for_upstream_total(sent + 1);
  cr_expect_eq(fake_count(&fake, last), 1, "the moved fetch took the slot that freed");
  fake_set_mode(&fake, "*", "ok", 0);
  fake_release(&fake, NULL, 0);
  long status = raw_answer_status(root);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  cr_expect_eq(status, 200, "root's request for nobody's queued id");
  cr_expect_eq(fake_count(&fake, last), 1, "one fetch for both");
}

/* --- timeouts ------------------------------------------------------------------------------ */

/* An upstream silent for 2 s of a 3 s timeout_ms: waited for, and answered. (libcurl's
 * low-speed cut-off at half the timeout made this a 504 after 1.5 s.) */
Test(timeouts, an_upstream_silent_for_most_of_timeout_ms_is_waited_for) {
  struct daemon_options options = {.timeout_ms = 3000};
  start_with(&options);
  char id[40];
  id_of(7, 0, id);
  fake_set_mode(&fake, id, "slow", 2000);
  long ms;
  cr_expect_eq(timed_get(id, &ms), 200);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "timeout_ms") == NULL && strstr(log, "trickled") == NULL, "%s", log);
  free(log);
}

/* Silent past timeout_ms on a connection already in use (reused: no name lookup, no connect):
 * 504 no earlier than timeout_ms, and the log says the upstream was silent, not that the fetch
 * waited for a connection. */
Test(timeouts, an_upstream_silent_past_timeout_ms_is_504_and_logged_as_silent) {
  struct daemon_options options = {.timeout_ms = 3000};
  start_with(&options);
  char warm[40], id[40];
  id_of(7, 1, warm);
  id_of(7, 2, id);
  long ms;
  cr_assert_eq(timed_get(warm, &ms), 200);
  fake_set_mode(&fake, id, "slow", 6000);
  struct http_response response;
  long start = now_ms();
  get_enrollment(id, &response);
  long elapsed = now_ms() - start;
  cr_expect_eq(response.status, 504);
  cr_expect(strstr(response.body, "\"code\":\"upstream_timeout\"") != NULL, "%s", response.body);
  http_response_free(&response);
  cr_expect_geq(elapsed, 3000, "answered 504 after %ld ms, before timeout_ms", elapsed);
  cr_expect_eq(fake_stat(&fake, "connections"), 1, "the second fetch reused the connection");
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "no answer within timeout_ms (3000 ms): the request was sent and the "
                        "upstream was silent") != NULL, "%s", log);
  cr_expect(strstr(log, "free upstream connection") == NULL, "%s", log);
  cr_expect(strstr(log, "fetch slot") == NULL, "%s", log);
  free(log);
}

/* A body of one byte every 100 ms, with timeout_ms 6000: the trickle guard (fewer than 1024
 * bytes a second over 3 s, from the first byte) cuts it, before the client's own 5 s; the log
 * names the trickle. */
Test(timeouts, a_trickling_body_is_still_cut_and_logged_as_such) {
  struct daemon_options options = {.timeout_ms = 6000};
  start_with(&options);
  char id[40];
  id_of(7, 3, id);
  fake_set_mode(&fake, id, "trickle", 0);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, id);
  struct http_response response;
  http_get_within(url, 5000, &response);
  cr_expect_eq(response.status, 504);
  cr_expect(strstr(response.body, "\"code\":\"upstream_timeout\"") != NULL, "%s", response.body);
  http_response_free(&response);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "the answer trickled: fewer than 1024 bytes a second for 3000 ms after it "
                        "began") != NULL, "%s", log);
  cr_expect(strstr(log, "no answer within") == NULL, "%s", log);
  free(log);
}
