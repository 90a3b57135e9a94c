/* The fleet's shared tier ([shared], fleet.h) with the real thing: a redis-server on loopback
 * and several real daemons against one fake upstream. Cross-host hits with the first host's
 * freshness, cross-host coalescing, purges that reach every host, Redis killed and restarted,
 * Redis slow, garbage planted in Redis, a lock whose holder died, AUTH, and neither the credential
 * nor the Redis password anywhere they must not be. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define HOSTS 3
#define PREFIX "flipcached:"

static struct flipcached_proc hosts[HOSTS];
static size_t host_count;
static pid_t redis_pid;
static int redis_port;
static char redis_dir[256];
static char redis_password[64]; /* empty: no AUTH */
static char password_path[320];
static char token[64];

/* ---- redis-server ------------------------------------------------------------------------- */

static redisContext *redis_connect(void) {
  struct timeval tv = {2, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
  if (!c || c->err) {
    if (c)
      redisFree(c);
    return NULL;
  }
  if (redis_password[0]) {
    redisReply *r = redisCommand(c, "AUTH %s", redis_password);
    if (r)
      freeReplyObject(r);
  }
  return c;
}

/* One command on a fresh connection; the reply (free it) or NULL when Redis does not answer. */
static redisReply *redis(const char *format, ...) {
  redisContext *c = redis_connect();
  if (!c)
    return NULL;
  va_list ap;
  va_start(ap, format);
  redisReply *r = redisvCommand(c, format, ap);
  va_end(ap);
  redisFree(c);
  return r;
}

static long long redis_integer(const char *format, const char *arg) {
  redisReply *r = redis(format, arg);
  cr_assert(r && r->type == REDIS_REPLY_INTEGER, "redis did not answer %s with a number", format);
  long long n = r->integer;
  freeReplyObject(r);
  return n;
}

/* The write-back of a fetched entry is not on its answer's path: waits (bounded) until the id's
 * entry is in Redis. */
static void wait_in_redis(const char *id) {
  for (int i = 0; i < 100 && redis_integer("EXISTS " PREFIX "e:%s", id) == 0; i++)
    pause_ms(20);
}

static void redis_launch(void) {
  char port[16], log[320];
  snprintf(port, sizeof(port), "%d", redis_port);
  snprintf(log, sizeof(log), "%s/redis.log", redis_dir);
  redis_pid = fork();
  cr_assert(redis_pid >= 0);
  if (redis_pid == 0) {
    if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
      _exit(126);
    if (redis_password[0])
      execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", redis_dir, "--enable-debug-command", "yes",
             "--requirepass", redis_password, (char *)NULL);
    else
      execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", redis_dir, "--enable-debug-command", "yes",
             (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    redisReply *r = redis("PING");
    bool up = r && r->type == REDIS_REPLY_STATUS;
    if (r)
      freeReplyObject(r);
    if (up)
      return;
    pause_ms(25);
  }
  cr_assert_fail("redis-server did not start on port %d (see %s)", redis_port, log);
}

static void redis_kill(void) {
  if (redis_pid > 0) {
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
  }
  redis_pid = 0;
}

/* ---- the fleet ---------------------------------------------------------------------------- */

/* Waits (bounded) until a host's /stats field is `value`; returns what it saw last. */
static long wait_stat(size_t host, const char *field, long value, long timeout_ms) {
  long seen = flipcached_stat(&hosts[host], field);
  for (long waited = 0; seen != value && waited < timeout_ms; waited += 20) {
    pause_ms(20);
    seen = flipcached_stat(&hosts[host], field);
  }
  return seen;
}

/* Starts redis (with a password when given), the fake and n daemons on it. host_password: the
 * password the daemons are given (NULL: none). */
static void start_fleet(size_t n, const char *password, const char *host_password,
                        unsigned timeout_ms) {
  snprintf(redis_dir, sizeof(redis_dir), "/tmp/flipfleet.XXXXXX");
  cr_assert(mkdtemp(redis_dir));
  redis_port = free_port();
  snprintf(redis_password, sizeof(redis_password), "%s", password ? password : "");
  redis_launch();
  snprintf(password_path, sizeof(password_path), "%s/redis-password", redis_dir);
  if (host_password) {
    FILE *f = fopen(password_path, "w");
    cr_assert(f);
    fprintf(f, "%s\n", host_password);
    fclose(f);
    chmod(password_path, 0600);
  }
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  char sections[1024];
  snprintf(sections, sizeof(sections), "[shared]\nredis = 127.0.0.1:%d\ntimeout_ms = %u\n%s%s%s",
           redis_port, timeout_ms, host_password ? "password_file = " : "",
           host_password ? password_path : "", host_password ? "\n" : "");
  struct daemon_options options = {.token = token, .extra_sections = sections,
                                   .log_level = "info", .timeout_ms = 3000};
  host_count = n;
  for (size_t i = 0; i < n; i++)
    flipcached_start(&hosts[i], &fake, &options);
  /* A daemon is ready before its Redis connection is (the tier is never waited for); the tests
   * that expect the tier up start once every host has it, so that none races its handshake. */
  bool connects = (!password && !host_password) ||
                  (password && host_password && strcmp(password, host_password) == 0);
  for (size_t i = 0; connects && i < n; i++)
    cr_assert_eq(wait_stat(i, "shared_state", 1, 10000), 1, "host %zu never reached Redis", i);
}

static void stop_fleet(void) {
  for (size_t i = 0; i < host_count; i++) {
    if (hosts[i].pid > 0)
      cr_expect_eq(flipcached_stop(&hosts[i]), 0, "host %zu must exit 0 on SIGTERM", i);
    remove_tree(hosts[i].dir);
  }
  fake_stop(&fake);
  redis_kill();
  remove_tree(redis_dir);
}

static long admin_status(size_t host, const char *method, const char *path,
                         struct http_response *response) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", hosts[host].url, path);
  http_request(method, url, NULL, response);
  return response->status;
}

/* The local entry's fetched_at on a host (GET /cache/enrollments/ID) into out; false when the host
 * holds none. */
static bool local_fetched_at(size_t host, const char *id, char *out, size_t out_len) {
  char path[128];
  snprintf(path, sizeof(path), "/cache/enrollments/%s", id);
  struct http_response r;
  bool held = admin_status(host, NULL, path, &r) == 200;
  out[0] = '\0';
  json_object *root = held ? json_tokener_parse(r.body) : NULL, *field;
  if (root && json_object_object_get_ex(root, "fetched_at", &field))
    snprintf(out, out_len, "%s", json_object_get_string(field));
  json_object_put(root);
  http_response_free(&r);
  return held;
}

static bool held_by(size_t host, const char *id) {
  char unused[40];
  return local_fetched_at(host, id, unused, sizeof(unused));
}

static void id_of(char *out, unsigned i) { sprintf(out, "f1ee7000-0000-4000-8000-%012x", i); }

TestSuite(fleet, .fini = stop_fleet, .timeout = 120);

Test(fleet, a_miss_on_one_host_is_a_hit_on_the_others_with_the_first_hosts_freshness) {
  start_fleet(3, NULL, NULL, 1000);
  char id[40];
  id_of(id, 1);
  struct http_response first;
  get_enrollment_from(&hosts[0], id, &first);
  cr_assert_eq(first.status, 200);
  cr_assert_eq(fake_count(&fake, id), 1);
  wait_in_redis(id);
  pause_ms(1100); /* a second later: the others' copies must keep the first fetch's times */
  freeReplyObject(redis("CONFIG RESETSTAT"));
  for (size_t h = 1; h < 3; h++) {
    struct http_response r;
    get_enrollment_from(&hosts[h], id, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, first.body_len);
    cr_assert_eq(memcmp(r.body, first.body, r.body_len), 0, "the same bytes on every host");
    char cache_status[256], age[32];
    cr_assert(http_header(&r, "Cache-Status", cache_status, sizeof(cache_status)));
    cr_expect(strstr(cache_status, "flipcached-shared; hit") == cache_status,
              "Cache-Status names the shared tier's hit first: %s", cache_status);
    cr_assert(http_header(&r, "Age", age, sizeof(age)));
    cr_expect_geq(atol(age), 1, "the copy's age counts from the first host's fetch, not now");
    http_response_free(&r);
    char here[40], there[40];
    cr_assert(local_fetched_at(h, id, here, sizeof(here)));
    cr_assert(local_fetched_at(0, id, there, sizeof(there)));
    cr_expect_str_eq(here, there, "stored here with its original fetched_at");
    cr_expect_eq(flipcached_stat(&hosts[h], "shared_hits"), 1);
  }
  cr_assert_eq(fake_count(&fake, id), 1, "one upstream request for three hosts");
  /* A fresh entry in Redis answers the lookup script without the lock being tried: no SET ran
   * (commandstats count the calls made from scripts too), one script per host. */
  redisReply *stats = redis("INFO commandstats");
  cr_assert(stats && stats->type == REDIS_REPLY_STRING);
  cr_expect(strstr(stats->str, "cmdstat_set:") == NULL, "a hit in Redis took the lock:\n%s",
            stats->str);
  cr_expect(strstr(stats->str, "cmdstat_eval:calls=2,") != NULL, "%s", stats->str);
  freeReplyObject(stats);
  http_response_free(&first);
  /* Stored locally: with Redis gone, the others still answer from their own cache. */
  redis_kill();
  struct http_response again;
  get_enrollment_from(&hosts[2], id, &again);
  cr_expect_eq(again.status, 200);
  http_response_free(&again);
  cr_expect_eq(fake_count(&fake, id), 1);
  redis_launch(); /* for stop_fleet's clean exit checks, nothing else */
}

Test(fleet, thirty_concurrent_cold_requests_over_three_hosts_make_one_upstream_request) {
  start_fleet(3, NULL, NULL, 1000);
  for (unsigned round = 0; round < 3; round++) {
    char id[40];
    id_of(id, 100 + round);
    fake_set_mode(&fake, id, "ok", 400);
    char urls[30][192];
    const char *list[30];
    for (size_t i = 0; i < 30; i++) {
      snprintf(urls[i], sizeof(urls[i]), "%s/v1/enrollments/%s", hosts[i % 3].url, id);
      list[i] = urls[i];
    }
    struct http_response responses[30];
    http_get_concurrently(list, 30, responses);
    for (size_t i = 0; i < 30; i++) {
      cr_expect_eq(responses[i].status, 200, "request %zu", i);
      http_response_free(&responses[i]);
    }
    cr_assert_eq(fake_count(&fake, id), 1, "round %u: one upstream request for the fleet", round);
  }
  long waits = 0;
  for (size_t h = 0; h < 3; h++)
    waits += flipcached_stat(&hosts[h], "shared_lock_waits");
  cr_expect_geq(waits, 2, "the hosts that did not fetch waited on the lock");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_timeouts") +
                   flipcached_stat(&hosts[1], "shared_lock_timeouts") +
                   flipcached_stat(&hosts[2], "shared_lock_timeouts"), 0);
}

Test(fleet, at_size_a_thousand_cold_ids_asked_on_every_host_at_once_cost_one_request_each) {
  start_fleet(3, NULL, NULL, 1000);
  enum { IDS = 1000, ASKS = 3 * IDS };
  fake_set_mode(&fake, "*", "slow", 100); /* every fetch in flight while the others ask */
  static char urls[ASKS][192];
  static const char *list[ASKS];
  for (unsigned i = 0; i < ASKS; i++) {
    char id[40];
    id_of(id, 20000 + i / 3); /* each id asked of host 0, 1 and 2 in a row */
    snprintf(urls[i], sizeof(urls[i]), "%.63s/v1/enrollments/%.39s", hosts[i % 3].url, id);
    list[i] = urls[i];
  }
  static struct http_response responses[ASKS];
  http_get_many(list, ASKS, 96, responses);
  size_t ok = 0;
  for (unsigned i = 0; i < ASKS; i++) {
    ok += responses[i].status == 200;
    http_response_free(&responses[i]);
  }
  cr_expect_eq(ok, ASKS, "%zu of %d answered 200", ok, ASKS);
  cr_expect_eq(fake_stat(&fake, "total"), IDS, "one upstream request per id for the fleet");
  long shared_hits = 0, waits = 0, timeouts = 0;
  for (size_t h = 0; h < 3; h++) {
    shared_hits += flipcached_stat(&hosts[h], "shared_hits");
    waits += flipcached_stat(&hosts[h], "shared_lock_waits");
    timeouts += flipcached_stat(&hosts[h], "shared_lock_timeouts");
  }
  cr_expect_eq(shared_hits, 2 * IDS, "the two other hosts took each id from Redis");
  cr_expect_eq(timeouts, 0);
  cr_expect_gt(waits, 0, "and some of them waited on the holder's lock to get it");
}

Test(fleet, a_purge_on_one_host_reaches_every_host_within_a_second) {
  start_fleet(3, NULL, NULL, 1000);
  char id[40];
  id_of(id, 200);
  for (size_t h = 0; h < 3; h++) {
    struct http_response r;
    get_enrollment_from(&hosts[h], id, &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
    if (h == 0)
      wait_in_redis(id);
  }
  cr_assert_eq(fake_count(&fake, id), 1);
  char path[128];
  snprintf(path, sizeof(path), "/cache/enrollments/%s", id);
  struct http_response purge;
  cr_assert_eq(admin_status(1, "DELETE", path, &purge), 200, "%s", purge.body);
  json_object *root = json_tokener_parse(purge.body);
  json_object *shared = NULL;
  cr_assert(root && json_object_object_get_ex(root, "shared", &shared), "%s", purge.body);
  cr_expect_eq(json_field(json_object_to_json_string(shared), "deleted"), 1, "%s", purge.body);
  cr_expect_eq(json_field(json_object_to_json_string(shared), "hosts_notified"), 3,
               "every daemon's subscription heard it: %s", purge.body);
  json_object_put(root);
  http_response_free(&purge);
  cr_expect_eq(redis_integer("EXISTS " PREFIX "e:%s", id), 0, "gone from Redis");
  for (size_t h = 0; h < 3; h++) {
    bool held = held_by(h, id);
    for (int waited = 0; held && waited < 1000; waited += 20) {
      pause_ms(20);
      held = held_by(h, id);
    }
    cr_expect(!held, "host %zu still holds the purged entry after a second", h);
  }
  struct http_response after;
  get_enrollment_from(&hosts[2], id, &after);
  cr_expect_eq(after.status, 200);
  http_response_free(&after);
  cr_expect_eq(fake_count(&fake, id), 2, "asked again once, for the fleet");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_purges_received"), 1);
}

Test(fleet, delete_cache_on_one_host_empties_redis_and_every_host) {
  start_fleet(3, NULL, NULL, 1000);
  /* 2,500 entries: more than one SCAN batch, so the purge's scan must go on to the end. */
  enum { N = 2500 };
  static char ids[N][40];
  static char urls[N][192];
  static const char *list[N];
  for (unsigned i = 0; i < N; i++) {
    id_of(ids[i], 1000 + i);
    snprintf(urls[i], sizeof(urls[i]), "%.63s/v1/enrollments/%.39s", hosts[i % 3].url, ids[i]);
    list[i] = urls[i];
  }
  static struct http_response responses[N];
  http_get_many(list, N, 32, responses);
  for (unsigned i = 0; i < N; i++) {
    cr_assert_eq(responses[i].status, 200);
    http_response_free(&responses[i]);
  }
  redisReply *size = NULL;
  for (int i = 0; i < 100; i++) {
    size = redis("DBSIZE");
    bool all = size && size->integer >= N;
    freeReplyObject(size);
    if (all)
      break;
    pause_ms(20);
  }
  for (size_t h = 0; h < 3; h++)
    cr_assert_gt(flipcached_stat(&hosts[h], "cache_entries"), 0);
  struct http_response purge;
  cr_assert_eq(admin_status(0, "DELETE", "/cache", &purge), 200, "%s", purge.body);
  cr_expect(strstr(purge.body, "\"hosts_notified\":3"), "%s", purge.body);
  http_response_free(&purge);
  redisReply *keys = redis("KEYS " PREFIX "e:*");
  cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
  cr_expect_eq(keys->elements, 0, "%zu entries left in Redis", keys->elements);
  freeReplyObject(keys);
  for (size_t h = 1; h < 3; h++)
    cr_expect_eq(wait_stat(h, "cache_entries", 0, 1000), 0, "host %zu emptied within a second", h);
}

Test(fleet, redis_killed_then_restarted_the_hosts_serve_without_it_and_resume) {
  start_fleet(2, NULL, NULL, 200);
  char id[40];
  id_of(id, 300);
  redis_kill();
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_assert_eq(r.status, 200, "served from the local cache and the upstream without Redis");
  http_response_free(&r);
  for (unsigned i = 0; i < 20; i++) { /* misses go to the upstream at once, one each */
    char other[40];
    id_of(other, 400 + i);
    get_enrollment_from(&hosts[1], other, &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
    cr_assert_eq(fake_count(&fake, other), 1);
  }
  cr_expect_eq(wait_stat(0, "shared_state", 2, 2000), 2, "shown down in /stats");
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", hosts[0].url);
  http_get(url, &r);
  cr_expect_eq(r.status, 200, "degraded, not failed");
  cr_expect(strstr(r.body, "\"status\":\"degraded\"") && strstr(r.body, "shared tier"), "%s",
            r.body);
  http_response_free(&r);
  snprintf(url, sizeof(url), "%s/metrics", hosts[0].url);
  http_get(url, &r);
  cr_expect(strstr(r.body, "flipcached_shared_state 2"), "in /metrics too");
  cr_expect(strstr(r.body, "flipcached_shared_errors_total"));
  http_response_free(&r);
  pause_ms(1500); /* several failed reconnections */
  char *log = flipcached_log(&hosts[0]);
  size_t down_lines = 0;
  for (const char *p = log; (p = strstr(p, "(commands) is unavailable")); p++)
    down_lines++;
  cr_expect_eq(down_lines, 1, "the outage is logged once, not per attempt:\n%s", log);
  free(log);

  redis_launch();
  for (size_t h = 0; h < 2; h++)
    cr_assert_eq(wait_stat(h, "shared_state", 1, 10000), 1, "host %zu resumes", h);
  log = flipcached_log(&hosts[0]);
  cr_expect(strstr(log, "(commands) is available again"), "%s", log);
  free(log);
  char fresh[40];
  id_of(fresh, 500);
  get_enrollment_from(&hosts[0], fresh, &r);
  http_response_free(&r);
  wait_in_redis(fresh);
  get_enrollment_from(&hosts[1], fresh, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, fresh), 1, "the tier works again: a cross-host hit");
}

Test(fleet, a_slow_redis_costs_a_miss_its_timeout_not_redis_delay) {
  start_fleet(1, NULL, NULL, 200);
  char command[256];
  snprintf(command, sizeof(command), "redis-cli -p %d DEBUG SLEEP 4 >/dev/null 2>&1 & echo $!",
           redis_port);
  char out[64] = "";
  cr_assert_eq(run_command(command, out, sizeof(out)), 0);
  pid_t sleeper = (pid_t)atol(out);
  pause_ms(200);
  for (unsigned i = 0; i < 5; i++) {
    char id[40];
    id_of(id, 600 + i);
    struct http_response r;
    get_enrollment_from(&hosts[0], id, &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
  }
  /* Every answer came while Redis still slept: it does not answer a PING yet. */
  redisContext *probe = redisConnectWithTimeout("127.0.0.1", redis_port, (struct timeval){0, 300000});
  cr_assert(probe);
  redisSetTimeout(probe, (struct timeval){0, 300000});
  redisReply *pong = redisCommand(probe, "PING");
  cr_expect_null(pong, "the five misses were answered while Redis was asleep");
  if (pong)
    freeReplyObject(pong);
  redisFree(probe);
  (void)sleeper;
  cr_expect_geq(flipcached_stat(&hosts[0], "shared_errors"), 1);
  cr_expect_eq(wait_stat(0, "shared_state", 1, 15000), 1, "back once Redis wakes");
}

Test(fleet, garbage_in_redis_is_ignored_and_deleted) {
  start_fleet(2, NULL, NULL, 1000);
  char id[40], other[40];
  id_of(id, 700);
  id_of(other, 701);
  /* Garbage that does not decode, for an id whose fetch then fails: nothing replaces it, so it
   * must have been deleted. */
  freeReplyObject(redis("SET " PREFIX "e:%s %s", id, "not an entry at all"));
  fake_set_mode(&fake, id, "500", 0);
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_expect_neq(r.status, 200, "never the planted bytes");
  http_response_free(&r);
  cr_expect_eq(redis_integer("EXISTS " PREFIX "e:%s", id), 0, "the garbage was deleted");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_invalid"), 1);
  /* A sound entry of another id, copied under this id's key: its id is not the key's. */
  get_enrollment_from(&hosts[0], other, &r);
  http_response_free(&r);
  wait_in_redis(other);
  char moved[40];
  id_of(moved, 702);
  redisReply *value = redis("GET " PREFIX "e:%s", other);
  cr_assert(value && value->type == REDIS_REPLY_STRING);
  freeReplyObject(redis("SET " PREFIX "e:%s %b", moved, value->str, value->len));
  freeReplyObject(value);
  get_enrollment_from(&hosts[1], moved, &r);
  cr_assert_eq(r.status, 200);
  cr_expect(strstr(r.body, moved) && !strstr(r.body, other), "the id's own enrollment, fetched");
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, moved), 1);
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_invalid"), 1);
  /* A value of the wrong type is garbage too. */
  char listed[40];
  id_of(listed, 703);
  freeReplyObject(redis("RPUSH " PREFIX "e:%s x", listed));
  get_enrollment_from(&hosts[1], listed, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, listed), 1);
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_invalid"), 2, "counted as garbage");
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_errors"), 0, "not as a failure of Redis");
}

Test(fleet, a_lock_whose_holder_died_expires_and_the_next_host_fetches) {
  start_fleet(1, NULL, NULL, 1000);
  char id[40];
  id_of(id, 800);
  /* A host that took the lock and died: nobody will write the entry or release the lock. */
  freeReplyObject(redis("SET " PREFIX "lock:%s deadbeefdeadbeef PX 1500", id));
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_assert_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, id), 1);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_waits"), 1);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_timeouts"), 0,
               "it fetched once the lock expired, not at its own deadline");
  cr_expect_eq(redis_integer("EXISTS " PREFIX "lock:%s", id), 0, "and released its own lock");
}

Test(fleet, auth_the_password_works_and_never_shows) {
  start_fleet(2, "fleet-password-Xq7", "fleet-password-Xq7", 1000);
  char id[40];
  id_of(id, 900);
  /* Everything the daemons send Redis, as Redis sees it. */
  redisContext *monitor = redis_connect();
  cr_assert(monitor);
  redisReply *ok = redisCommand(monitor, "MONITOR");
  cr_assert(ok);
  freeReplyObject(ok);
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  http_response_free(&r);
  wait_in_redis(id);
  get_enrollment_from(&hosts[1], id, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, id), 1, "a cross-host hit through an AUTH'd Redis");
  struct timeval brief = {0, 300 * 1000};
  redisSetTimeout(monitor, brief);
  size_t lines = 0;
  void *reply;
  while (redisGetReply(monitor, &reply) == REDIS_OK) {
    redisReply *line = reply;
    if (line->type == REDIS_REPLY_STATUS)
      cr_expect(!strstr(line->str, token), "the credential went to Redis: %s", line->str);
    lines++;
    freeReplyObject(reply);
  }
  redisFree(monitor);
  cr_expect_gt(lines, 0, "MONITOR saw the daemons' commands");
  redisReply *keys = redis("KEYS *");
  for (size_t i = 0; keys && i < keys->elements; i++) {
    redisReply *v = redis("DUMP %s", keys->element[i]->str);
    cr_expect(!v || v->type != REDIS_REPLY_STRING || !memmem(v->str, v->len, token, strlen(token)),
              "the credential is in Redis under %s", keys->element[i]->str);
    if (v)
      freeReplyObject(v);
  }
  freeReplyObject(keys);
  for (size_t h = 0; h < 2; h++) {
    char *log = flipcached_log(&hosts[h]);
    cr_expect(!strstr(log, "fleet-password-Xq7"), "the Redis password is in the log:\n%s", log);
    free(log);
  }
}

Test(fleet, auth_a_missing_or_wrong_password_is_degraded_with_the_reason_and_still_serves) {
  start_fleet(1, "fleet-password-Xq7", "not-the-password", 200);
  cr_expect_eq(wait_stat(0, "shared_state", 2, 3000), 2);
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", hosts[0].url);
  struct http_response r;
  http_get(url, &r);
  cr_expect_eq(r.status, 200);
  cr_expect(strstr(r.body, "AUTH refused"), "the reason names AUTH: %s", r.body);
  http_response_free(&r);
  char id[40];
  id_of(id, 901);
  get_enrollment_from(&hosts[0], id, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  char *log = flipcached_log(&hosts[0]);
  cr_expect(!strstr(log, "not-the-password"), "the password is in the log:\n%s", log);
  free(log);
}
