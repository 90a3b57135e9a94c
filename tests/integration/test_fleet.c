/* The fleet's shared tier ([shared], fleet.h) with the real thing: a redis-server on loopback
 * and several real daemons against one fake upstream. Cross-host hits with the first host's
 * freshness, cross-host coalescing, purges that reach every host, Redis killed and restarted,
 * Redis slow, garbage planted in Redis, a lock whose holder died, AUTH, and neither the credential
 * nor the Redis password anywhere they must not be. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"
#include "record.h"
#include "redis_peers.h"
#include "seal.h"

#define HOSTS 3
#define PREFIX "flipcached:"

static struct flipcached_proc hosts[HOSTS];
static size_t host_count;
static struct redis_peer redis_server; /* its password: AUTH; empty: none */
static char redis_dir[256];
static char password_path[320];
static char token[64];
static char key_hex[2 * SEAL_KEY_BYTES + 1]; /* the fleet's shared key */
static char key_path[320];                  /* its file, 0600 */
static struct seal_keys fleet_keys;         /* parsed, to find an id's keys in Redis */

/* ---- what the daemons keep in Redis (seal.h, fleet_internal.h) ---------------------------- */

/* Redis's key of an id's entry ("e:") or lock ("lock:"), named under the fleet's key. */
static const char *key_of(const char *kind, const char *id) {
  static char out[4][128];
  static unsigned next;
  char name[SEAL_NAME_HEX + 1];
  seal_name(&fleet_keys, 0, id, name);
  char *key = out[next++ % 4];
  snprintf(key, 128, PREFIX "%s%s", kind, name);
  return key;
}

/* ---- redis-server (redis_peers.h) ---------------------------------------------------------- */

static redisContext *redis_connect(void) { return redis_peer_connect(&redis_server); }

/* One command on a fresh connection; the reply (free it) or NULL when Redis does not answer. */
static redisReply *redis(const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  redisReply *r = redis_peer_vcommand(&redis_server, format, ap);
  va_end(ap);
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
  for (int i = 0; i < 100 && redis_integer("EXISTS %s", key_of("e:", id)) == 0; i++)
    pause_ms(20);
}

static void redis_launch(void) { redis_peer_restart(&redis_server); }

static void redis_kill(void) { redis_peer_kill(&redis_server); }

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
/* Set before start_fleet: lines host 0 has more in its [shared] section (NULL: none), and
 * whether host 0 takes the key from systemd's credential (CREDENTIALS_DIRECTORY/flip-shared-key)
 * instead of key_file. Reset by stop_fleet. */
static const char *host0_sections;
static bool host0_key_from_credential;

static void start_fleet(size_t n, const char *password, const char *host_password,
                        unsigned timeout_ms) {
  snprintf(redis_dir, sizeof(redis_dir), "/tmp/flipfleet.XXXXXX");
  cr_assert(mkdtemp(redis_dir));
  redis_server = (struct redis_peer){0};
  snprintf(redis_server.password, sizeof(redis_server.password), "%s", password ? password : "");
  redis_peer_start(&redis_server, redis_dir, "redis", NULL);
  snprintf(password_path, sizeof(password_path), "%s/redis-password", redis_dir);
  if (host_password) {
    char line[80];
    snprintf(line, sizeof(line), "%s\n", host_password);
    write_private_file(password_path, line);
  }
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  fleet_random_key_hex(key_hex);
  snprintf(key_path, sizeof(key_path), "%s/shared-key", redis_dir);
  char key_line[2 * SEAL_KEY_BYTES + 2];
  snprintf(key_line, sizeof(key_line), "%s\n", key_hex);
  write_private_file(key_path, key_line);
  char err[200];
  cr_assert_eq(seal_keys_parse(key_line, strlen(key_line), &fleet_keys, err, sizeof(err)), 0);
  char sections[1024];
  snprintf(sections, sizeof(sections),
           "[shared]\nredis = 127.0.0.1:%d\ntimeout_ms = %u\nkey_file = %s\n%s%s%s",
           redis_server.port, timeout_ms, key_path, host_password ? "password_file = " : "",
           host_password ? password_path : "", host_password ? "\n" : "");
  struct daemon_options options = {.token = token, .extra_sections = sections,
                                   .log_level = "info", .timeout_ms = 3000};
  host_count = n;
  for (size_t i = 0; i < n; i++) {
    char host_sections[2048];
    struct daemon_options host_options = options;
    if (i == 0 && (host0_sections || host0_key_from_credential)) {
      snprintf(host_sections, sizeof(host_sections),
               "[shared]\nredis = 127.0.0.1:%d\ntimeout_ms = %u\n%s%s%s", redis_server.port,
               timeout_ms, host0_key_from_credential ? "" : "key_file = ",
               host0_key_from_credential ? "" : key_path,
               host0_key_from_credential ? "" : "\n");
      if (host0_sections)
        strncat(host_sections, host0_sections, sizeof(host_sections) - strlen(host_sections) - 1);
      host_options.extra_sections = host_sections;
    }
    flipcached_prepare(&hosts[i], &fake, &host_options);
    if (i == 0 && host0_key_from_credential) {
      snprintf(hosts[0].credentials_directory, sizeof(hosts[0].credentials_directory), "%s/creds",
               hosts[0].dir);
      cr_assert_eq(mkdir(hosts[0].credentials_directory, 0700), 0);
      char credential[400];
      snprintf(credential, sizeof(credential), "%s/flip-shared-key", hosts[0].credentials_directory);
      write_private_file(credential, key_line);
    }
    flipcached_launch(&hosts[i]);
  }
  /* A daemon is ready before its Redis connection is (the tier is never waited for); the tests
   * that expect the tier up start once every host has it, so that none races its handshake. */
  bool connects = (!password && !host_password) ||
                  (password && host_password && strcmp(password, host_password) == 0);
  for (size_t i = 0; connects && i < n; i++)
    cr_assert_eq(wait_stat(i, "shared_state", 1, 10000), 1, "host %zu never reached Redis", i);
}

static void stop_fleet(void) {
  host0_sections = NULL;
  host0_key_from_credential = false;
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
    /* docs/http.md's row of the shared tier's hit (its table is checked row by row). */
    cr_expect(cache_status_matches("flipcached-shared; hit; ttl=N, flipcached; fwd=uri-miss; stored",
                                   cache_status),
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
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", id)), 0, "gone from Redis");
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

/* A host that was down (or not yet subscribed) when another host purged says "hello" once it is
 * subscribed, and the purging host publishes its recent purges again: the restarted host drops
 * the copy its cache file kept. Without the hello it would serve that copy until it expired. */
Test(fleet, a_host_restarted_after_a_purge_hears_it_and_drops_the_copy_it_kept) {
  start_fleet(2, NULL, NULL, 1000);
  char id[40], kept[40];
  id_of(id, 210);
  id_of(kept, 211);
  for (size_t h = 0; h < 2; h++) {
    struct http_response r;
    get_enrollment_from(&hosts[h], id, &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
    get_enrollment_from(&hosts[h], kept, &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
    if (h == 0) {
      wait_in_redis(id);
      wait_in_redis(kept);
    }
  }
  cr_assert_eq(fake_count(&fake, id), 1);
  cr_assert_eq(flipcached_stop(&hosts[1]), 0);
  char path[128];
  snprintf(path, sizeof(path), "/cache/enrollments/%s", id);
  struct http_response purge;
  cr_assert_eq(admin_status(0, "DELETE", path, &purge), 200, "%s", purge.body);
  cr_expect(strstr(purge.body, "\"hosts_notified\":1"), "host 1 is down: %s", purge.body);
  http_response_free(&purge);
  flipcached_launch(&hosts[1]);
  cr_assert_eq(wait_stat(1, "shared_state", 1, 10000), 1);
  long heard = flipcached_stat(&hosts[1], "shared_purges_received");
  for (int waited = 0; heard < 1 && waited < 5000; waited += 20) {
    pause_ms(20);
    heard = flipcached_stat(&hosts[1], "shared_purges_received");
  }
  cr_assert_eq(heard, 1, "the restarted host heard the purge it missed");
  cr_expect_not(held_by(1, id), "and dropped its copy");
  cr_expect(held_by(1, kept), "what was not purged stays");
  struct http_response after;
  get_enrollment_from(&hosts[1], id, &after);
  cr_expect_eq(after.status, 200);
  http_response_free(&after);
  cr_expect_eq(fake_count(&fake, id), 2, "asked again, not served from the copy kept");
  char *log = flipcached_log(&hosts[0]);
  cr_expect(log && strstr(log, "1 recent purge published again (another host has just subscribed)"),
            "host 0 says why it published again");
  free(log);
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
           redis_server.port);
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
  redisContext *probe = redisConnectWithTimeout("127.0.0.1", redis_server.port, (struct timeval){0, 300000});
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

/* ---- a writer of Redis as the adversary ---------------------------------------------------- */

/* A value as a host of the fleet would write it for `for_id` (the format of fleet_internal.h:
 * sealed for the record format, the prefix and the id, the clear part fetched_at and
 * fresh_until), sealed under `keys`: the test plays a host with that key. Its length. */
static size_t sealed_entry(const struct seal_keys *keys, const char *for_id, uint16_t status,
                           const char *body, int64_t fetched_at, int64_t fresh_until,
                           unsigned char *out) {
  struct cache_record record = {.upstream_status = status, .fetched_at = fetched_at,
                                .fresh_until = fresh_until, .stale_until = fresh_until + 60,
                                .body = (const unsigned char *)body,
                                .body_len = (uint32_t)strlen(body)};
  unsigned char plain[4096], clear[16];
  record_encode(&record, plain);
  for (int i = 0; i < 8; i++) {
    clear[i] = (unsigned char)((uint64_t)fetched_at >> (8 * i));
    clear[8 + i] = (unsigned char)((uint64_t)fresh_until >> (8 * i));
  }
  char context[SEAL_MAX_CONTEXT];
  snprintf(context, sizeof(context), "flipcached entry record-v%u prefix=%s id=%s",
           RECORD_FORMAT_VERSION, PREFIX, for_id);
  cr_assert(seal_value(keys, context, clear, sizeof(clear), plain, record_encoded_len(&record),
                       out));
  return seal_sealed_len(sizeof(clear), record_encoded_len(&record));
}

static void plant(const char *key, const void *value, size_t len) {
  redisReply *r = redis("SET %s %b", key, value, len);
  cr_assert(r && r->type == REDIS_REPLY_STATUS, "SET %s", key);
  freeReplyObject(r);
}

/* GETs id from a host: 200 with the upstream's own enrollment of that id, asked upstream once
 * more than before. */
static void expect_the_upstreams_answer(size_t host, const char *id, long upstream_before) {
  struct http_response r;
  get_enrollment_from(&hosts[host], id, &r);
  cr_expect_eq(r.status, 200, "%s: %ld %s", id, r.status, r.body);
  cr_expect(r.body && strstr(r.body, id) && strstr(r.body, "john@example.com"),
            "the upstream's enrollment of %s, not what was planted: %s", id, r.body);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, id), upstream_before + 1, "%s was fetched upstream", id);
}

static long long now_seconds(void) { return (long long)time(NULL); }

/* What a writer of Redis without the key can plant, under the very key names the hosts use (the
 * strongest such writer: it cannot compute them): plaintext, another key's seal, another id's
 * sealed value, an oversized value, a value of another type. Each is refused and deleted, and
 * the client gets the upstream's answer. */
Test(fleet, what_a_writer_without_the_key_plants_is_refused_deleted_and_never_served) {
  start_fleet(2, NULL, NULL, 1000);
  char ids[6][40];
  for (unsigned i = 0; i < 6; i++)
    id_of(ids[i], 700 + i);
  /* Plaintext: an enrollment of the right id, "fresh" for ten years, as round two's test did. */
  char forged[512];
  snprintf(forged, sizeof(forged), "{\"id\":\"%s\",\"site\":{\"first_name\":\"Mallory\"}}", ids[0]);
  plant(key_of("e:", ids[0]), forged, strlen(forged));
  expect_the_upstreams_answer(0, ids[0], 0);
  /* Sealed under a key that is not the fleet's. */
  struct seal_keys other;
  char other_hex[2 * SEAL_KEY_BYTES + 2], err[200];
  fleet_random_key_hex(other_hex);
  cr_assert_eq(seal_keys_parse(other_hex, strlen(other_hex), &other, err, sizeof(err)), 0);
  unsigned char value[4096];
  snprintf(forged, sizeof(forged), "{\"id\":\"%s\",\"site\":{\"first_name\":\"Mallory\"}}", ids[1]);
  size_t len = sealed_entry(&other, ids[1], 200, forged, now_seconds(), now_seconds() + 300, value);
  plant(key_of("e:", ids[1]), value, len);
  expect_the_upstreams_answer(0, ids[1], 0);
  /* Another id's sound value, copied under this id's key. */
  struct http_response r;
  get_enrollment_from(&hosts[0], ids[2], &r);
  http_response_free(&r);
  wait_in_redis(ids[2]);
  redisReply *real = redis("GET %s", key_of("e:", ids[2]));
  cr_assert(real && real->type == REDIS_REPLY_STRING);
  plant(key_of("e:", ids[3]), real->str, real->len);
  freeReplyObject(real);
  expect_the_upstreams_answer(1, ids[3], 0);
  /* 12 MiB: refused by the script without being sent (and deleted); memory stays flat. */
  size_t huge_len = 12u * 1024 * 1024;
  char *huge = malloc(huge_len);
  cr_assert(huge);
  memset(huge, 'x', huge_len);
  plant(key_of("e:", ids[4]), huge, huge_len);
  free(huge);
  long rss_before = proc_status_kb(hosts[1].pid, "VmRSS");
  expect_the_upstreams_answer(1, ids[4], 0);
  long rss_after = proc_status_kb(hosts[1].pid, "VmRSS");
  cr_expect_lt(rss_after - rss_before, 8 * 1024, "the host's memory grew by %ld KiB: it read the "
               "12 MiB value", rss_after - rss_before);
  /* A value of another type. */
  freeReplyObject(redis("RPUSH %s x", key_of("e:", ids[5])));
  expect_the_upstreams_answer(1, ids[5], 0);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_invalid"), 2);
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_invalid"), 3);
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_errors"), 0, "not counted as Redis failing");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_hits") + flipcached_stat(&hosts[1], "shared_hits"),
               0, "nothing planted was served");
  /* Each planted value is gone: replaced by the host's own sealed write-back. */
  for (unsigned i = 0; i < 6; i++) {
    if (i == 2)
      continue;
    wait_in_redis(ids[i]);
    redisReply *v = redis("GET %s", key_of("e:", ids[i]));
    cr_expect(v && v->type == REDIS_REPLY_STRING && v->len > 4 && memcmp(v->str, "fcS1", 4) == 0 &&
              !memmem(v->str, v->len, "Mallory", 7), "id %u: the planted value is still there", i);
    if (v)
      freeReplyObject(v);
  }
  /* Garbage for an id whose fetch then fails: nothing replaces it, so it was deleted. */
  char failing[40];
  id_of(failing, 710);
  plant(key_of("e:", failing), "not an entry at all", 19);
  fake_set_mode(&fake, failing, "500", 0);
  get_enrollment_from(&hosts[0], failing, &r);
  cr_expect_neq(r.status, 200, "never the planted bytes");
  http_response_free(&r);
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", failing)), 0, "the garbage was deleted");
}

/* A writer of Redis without the key publishes purges on the channel, in the hosts' own words and
 * as one of them: they do not open, so they are ignored and counted, and the hosts keep their
 * copies. */
Test(fleet, purges_published_without_the_key_are_ignored) {
  start_fleet(2, NULL, NULL, 1000);
  char id[40];
  id_of(id, 0xf06e);
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_assert_eq(r.status, 200);
  http_response_free(&r);
  char message[128];
  snprintf(message, sizeof(message), "purge deadbeefdeadbeef %s", id);
  freeReplyObject(redis("PUBLISH " PREFIX "events %s", message));
  freeReplyObject(redis("PUBLISH " PREFIX "events %s", "purge-all deadbeefdeadbeef"));
  cr_expect_eq(wait_stat(0, "shared_invalid", 2, 2000), 2, "both messages refused");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_purges_received"), 0);
  cr_expect(held_by(0, id), "a forged purge deleted the host's copy");
  cr_expect_gt(flipcached_stat(&hosts[0], "cache_entries"), 0);
}

/* A value sealed with the fleet's key (a peer host, or the test playing one) is still judged as
 * an upstream answer is: its times are bounded by this host's ttl, a time in the future is
 * refused, and a 404 or 200 whose body would not have been kept is garbage. */
Test(fleet, a_copy_sealed_with_the_fleets_key_is_judged_like_an_upstream_answer) {
  start_fleet(1, NULL, NULL, 1000);
  char ids[4][40];
  for (unsigned i = 0; i < 4; i++)
    id_of(ids[i], 720 + i);
  long long now = now_seconds();
  unsigned char value[4096];
  char body[512];
  /* A sound copy "fresh" for ten years: served, but fresh no longer than this host's ttl (300)
   * from its fetch. */
  snprintf(body, sizeof(body), "{\"id\":\"%s\",\"site\":{\"first_name\":\"Peer\"}}", ids[0]);
  size_t len = sealed_entry(&fleet_keys, ids[0], 200, body, now - 10, now + 315360000, value);
  plant(key_of("e:", ids[0]), value, len);
  struct http_response r;
  get_enrollment_from(&hosts[0], ids[0], &r);
  cr_assert_eq(r.status, 200);
  cr_expect(strstr(r.body, "Peer"), "the peer's copy is served: %s", r.body);
  char cache_status[256];
  cr_assert(http_header(&r, "Cache-Status", cache_status, sizeof(cache_status)));
  const char *ttl = strstr(cache_status, "ttl=");
  cr_assert(ttl, "%s", cache_status);
  cr_expect_leq(atol(ttl + 4), 290, "fresh for this host's ttl from its fetch: %s", cache_status);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, ids[0]), 0);
  /* Fetched an hour from now: refused (and the upstream asked). */
  snprintf(body, sizeof(body), "{\"id\":\"%s\",\"site\":{\"first_name\":\"Peer\"}}", ids[1]);
  len = sealed_entry(&fleet_keys, ids[1], 200, body, now + 3600, now + 3900, value);
  plant(key_of("e:", ids[1]), value, len);
  expect_the_upstreams_answer(0, ids[1], 0);
  /* A 404 whose body is a script, not JSON: it would never have been kept; garbage. */
  len = sealed_entry(&fleet_keys, ids[2], 404, "<script>alert(1)</script> not json at all", now,
                     now + 60, value);
  plant(key_of("e:", ids[2]), value, len);
  expect_the_upstreams_answer(0, ids[2], 0);
  /* A 200 of another id's enrollment, sealed for this id. */
  snprintf(body, sizeof(body), "{\"id\":\"%s\"}", ids[0]);
  len = sealed_entry(&fleet_keys, ids[3], 200, body, now, now + 60, value);
  plant(key_of("e:", ids[3]), value, len);
  expect_the_upstreams_answer(0, ids[3], 0);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_invalid"), 2, "the two bodies; the future "
               "time is refused, not garbage");
}

/* A lock key of another type, or without an expiry, would never go: the lookup deletes it and
 * takes the lock; the miss does not wait at all. */
Test(fleet, a_lock_of_another_type_or_without_expiry_is_repaired_without_a_wait) {
  start_fleet(1, NULL, NULL, 1000);
  char hashed[40], forever[40];
  id_of(hashed, 730);
  id_of(forever, 731);
  freeReplyObject(redis("HSET %s a b", key_of("lock:", hashed)));
  freeReplyObject(redis("SET %s deadbeefdeadbeef", key_of("lock:", forever)));
  expect_the_upstreams_answer(0, hashed, 0);
  expect_the_upstreams_answer(0, forever, 0);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_waits"), 0, "no wait on either");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_invalid"), 2);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_errors"), 0);
  cr_expect_eq(redis_integer("EXISTS %s", key_of("lock:", hashed)), 0, "released after");
}

/* A lock that expires only long after a fetch could have ended (written by someone else): one
 * miss waits its bound (lock_ms) and deletes it; the lock does not outlive that one wait. */
Test(fleet, a_lock_that_outlives_its_bound_costs_one_wait_and_is_deleted) {
  start_fleet(1, NULL, NULL, 100);
  char id[40];
  id_of(id, 740);
  freeReplyObject(redis("SET %s deadbeefdeadbeef PX 600000", key_of("lock:", id)));
  expect_the_upstreams_answer(0, id, 0);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_timeouts"), 1);
  redisReply *lock = redis("GET %s", key_of("lock:", id));
  cr_expect(lock && lock->type != REDIS_REPLY_STRING, "the planted lock is still there");
  if (lock)
    freeReplyObject(lock);
}

Test(fleet, a_lock_whose_holder_died_expires_and_the_next_host_fetches) {
  start_fleet(1, NULL, NULL, 1000);
  char id[40];
  id_of(id, 800);
  /* A host that took the lock and died: nobody will write the entry or release the lock. */
  freeReplyObject(redis("SET %s deadbeefdeadbeef PX 1500", key_of("lock:", id)));
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_assert_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, id), 1);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_waits"), 1);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_lock_timeouts"), 0,
               "it fetched once the lock expired, not at its own deadline");
  cr_expect_eq(redis_integer("EXISTS %s", key_of("lock:", id)), 0, "and released its own lock");
}

/* ---- purges against fetches in flight --------------------------------------------------------- */

/* Host 0's fetch of id is at the upstream, held there: it began before what the caller does
 * next. */
static int hold_a_fetch_on_host_0(const char *id) {
  fake_set_mode(&fake, id, "hold", 0);
  int connection = raw_ask_enrollment(hosts[0].port, id);
  for (int i = 0; i < 500 && fake_stat(&fake, "held") < 1; i++)
    pause_ms(10);
  cr_assert_eq(fake_stat(&fake, "held"), 1, "host 0's fetch never reached the upstream");
  return connection;
}

/* Waits until host 0's write-back of id has run (its lock released by the same script). */
static void wait_for_write_back(const char *id) {
  for (int i = 0; i < 200 && redis_integer("EXISTS %s", key_of("lock:", id)) == 1; i++)
    pause_ms(10);
  cr_assert_eq(redis_integer("EXISTS %s", key_of("lock:", id)), 0);
  pause_ms(50); /* the script is one command: done once the lock is gone; a margin for the log */
}

/* Host 1 purges id while host 0's fetch of it is at a slow upstream: host 0's client gets its
 * answer, and the pre-purge copy is nowhere afterwards, neither in Redis nor on any host. */
Test(fleet, a_purge_during_another_hosts_slow_fetch_leaves_no_pre_purge_copy_anywhere) {
  start_fleet(2, NULL, NULL, 1000);
  char id[40], path[128];
  id_of(id, 750);
  int waiting = hold_a_fetch_on_host_0(id);
  snprintf(path, sizeof(path), "/cache/enrollments/%s", id);
  struct http_response purge; /* 404: no host held it yet; the purge goes out all the same */
  cr_assert_eq(admin_status(1, "DELETE", path, &purge), 404, "%s", purge.body);
  http_response_free(&purge);
  cr_assert_eq(wait_stat(0, "shared_purges_received", 1, 2000), 1);
  fake_set_mode(&fake, id, "ok", 0);
  cr_assert_eq(fake_release(&fake, id, 0), 1);
  cr_expect_eq(raw_answer_status(waiting), 200, "the fetch still answers its client");
  wait_for_write_back(id);
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", id)), 0, "a pre-purge copy in Redis");
  cr_expect(!held_by(0, id) && !held_by(1, id), "a pre-purge copy on a host");
  expect_the_upstreams_answer(1, id, 1);
}

/* The same race where host 0 has not heard of the purge when its answer lands (its
 * subscription was down, or the message is late): Redis refuses its write-back all the same,
 * because the purge moved the generation on. The purge here is played in Redis itself, as the
 * purge script does it but without the message. */
Test(fleet, a_write_back_of_a_fetch_begun_before_a_purge_is_refused_by_redis) {
  start_fleet(2, NULL, NULL, 1000);
  char id[40];
  id_of(id, 760);
  int waiting = hold_a_fetch_on_host_0(id);
  freeReplyObject(redis("INCR " PREFIX "gen"));
  fake_set_mode(&fake, id, "ok", 0);
  cr_assert_eq(fake_release(&fake, id, 0), 1);
  cr_expect_eq(raw_answer_status(waiting), 200);
  wait_for_write_back(id);
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", id)), 0,
               "the write-back of a fetch begun before the purge was stored");
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_writes"), 1, "it was sent, and refused");
  /* A fetch begun after it writes back as ever. */
  char later[40];
  id_of(later, 761);
  struct http_response r;
  get_enrollment_from(&hosts[0], later, &r);
  http_response_free(&r);
  wait_in_redis(later);
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", later)), 1);
}

/* A purge from another host during this host's warm-up run (its list fetched before the purge)
 * keeps the list out of this host's cache, as a local purge does; and the warm-up writes
 * nothing to Redis. */
Test(fleet, another_hosts_purge_during_a_warm_up_keeps_its_list_out_of_every_cache) {
  host0_sections = "[warm]\nprogram_ids = fleetwarm\n";
  start_fleet(2, NULL, NULL, 1000);
  for (int i = 0; i < 500 && flipcached_stat(&hosts[0], "warm_running") != 0; i++)
    pause_ms(10); /* the run at start found an empty program */
  fake_set_program(&fake, "fleetwarm", 500, "f1eeaa00", "ok", 1000);
  long asked = fake_program_count(&fake, "fleetwarm");
  struct http_response r;
  cr_assert_eq(admin_status(0, "POST", "/cache/warm", &r), 202, "%s", r.body);
  http_response_free(&r);
  for (int i = 0; i < 500 && fake_program_count(&fake, "fleetwarm") <= asked; i++)
    pause_ms(10);
  cr_assert_eq(fake_program_count(&fake, "fleetwarm"), asked + 1, "the run's list was never "
               "asked for");
  cr_assert_eq(admin_status(1, "DELETE", "/cache", &r), 200, "%s", r.body);
  http_response_free(&r);
  /* A purge of everything is published twice: before and after its scan. */
  cr_assert_eq(wait_stat(0, "shared_purges_received", 2, 2000), 2);
  cr_assert_eq(wait_stat(0, "warm_running", 0, 10000), 0, "the run never ended");
  cr_expect_eq(flipcached_stat(&hosts[0], "warm_stored"), 0, "the list fetched before the purge "
               "was stored");
  cr_expect_eq(flipcached_stat(&hosts[0], "cache_entries"), 0);
  redisReply *keys = redis("KEYS " PREFIX "e:*");
  cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
  cr_expect_eq(keys->elements, 0, "the warm-up wrote to Redis");
  freeReplyObject(keys);
}

/* The key from systemd's credential (CREDENTIALS_DIRECTORY/flip-shared-key, no key_file) is the
 * fleet's key like any other: a host reading it shares entries with one reading key_file. */
Test(fleet, the_key_from_systemds_credential_is_the_fleets_key) {
  host0_key_from_credential = true;
  start_fleet(2, NULL, NULL, 1000);
  char id[40];
  id_of(id, 0x5ec0);
  struct http_response r;
  get_enrollment_from(&hosts[0], id, &r);
  cr_assert_eq(r.status, 200);
  http_response_free(&r);
  wait_in_redis(id);
  get_enrollment_from(&hosts[1], id, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, id), 1, "host 1 opened what host 0 sealed");
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_hits"), 1);
  char *log = flipcached_log(&hosts[0]);
  cr_expect(!strstr(log, key_hex), "the key is in the log");
  free(log);
}

/* ---- keys ---------------------------------------------------------------------------------------- */

/* A host restarted with a new key first and the old one second reads every entry the old key
 * sealed (shared hits, no upstream request), and writes new ones under the new key. */
Test(fleet, key_rotation_new_key_first_old_second_keeps_every_entry_readable) {
  start_fleet(2, NULL, NULL, 1000);
  enum { N = 20 };
  char ids[N][40];
  for (unsigned i = 0; i < N; i++) {
    id_of(ids[i], 770 + i);
    struct http_response r;
    get_enrollment_from(&hosts[0], ids[i], &r);
    cr_assert_eq(r.status, 200);
    http_response_free(&r);
    wait_in_redis(ids[i]);
  }
  char new_hex[2 * SEAL_KEY_BYTES + 1], rotated[300], rotated_path[340], sections[1024];
  fleet_random_key_hex(new_hex);
  snprintf(rotated, sizeof(rotated), "# new first, old second\n%s\n%s\n", new_hex, key_hex);
  snprintf(rotated_path, sizeof(rotated_path), "%s/shared-key-rotated", redis_dir);
  write_private_file(rotated_path, rotated);
  cr_assert_eq(flipcached_stop(&hosts[1]), 0);
  remove_tree(hosts[1].dir);
  snprintf(sections, sizeof(sections),
           "[shared]\nredis = 127.0.0.1:%d\ntimeout_ms = 1000\nkey_file = %s\n", redis_server.port,
           rotated_path);
  struct daemon_options options = {.token = token, .extra_sections = sections,
                                   .log_level = "info", .timeout_ms = 3000};
  flipcached_start(&hosts[1], &fake, &options);
  cr_assert_eq(wait_stat(1, "shared_state", 1, 10000), 1);
  for (unsigned i = 0; i < N; i++) {
    struct http_response r;
    get_enrollment_from(&hosts[1], ids[i], &r);
    cr_expect_eq(r.status, 200);
    http_response_free(&r);
    cr_expect_eq(fake_count(&fake, ids[i]), 1, "entry %u asked upstream again", i);
  }
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_hits"), N);
  cr_expect_eq(flipcached_stat(&hosts[1], "shared_invalid"), 0);
  /* A new entry is written under the new key's name, sealed by it. */
  struct seal_keys new_keys;
  char err[200];
  cr_assert_eq(seal_keys_parse(rotated, strlen(rotated), &new_keys, err, sizeof(err)), 0);
  char fresh[40], name[SEAL_NAME_HEX + 1], key[128];
  id_of(fresh, 799);
  struct http_response r;
  get_enrollment_from(&hosts[1], fresh, &r);
  http_response_free(&r);
  seal_name(&new_keys, 0, fresh, name);
  snprintf(key, sizeof(key), PREFIX "e:%s", name);
  for (int i = 0; i < 100 && redis_integer("EXISTS %s", key) == 0; i++)
    pause_ms(20);
  cr_expect_eq(redis_integer("EXISTS %s", key), 1, "written under the new key's name");
  cr_expect_eq(redis_integer("EXISTS %s", key_of("e:", fresh)), 0, "not under the old one's");
  /* A host with the old key alone cannot read it: it asks upstream (and is not fooled). */
  get_enrollment_from(&hosts[0], fresh, &r);
  cr_expect_eq(r.status, 200);
  http_response_free(&r);
  cr_expect_eq(fake_count(&fake, fresh), 2);
}

/* Everything Redis holds and everything it is told, by three hosts serving 30 ids with a purge
 * among them: no id (in any case, with or without its dashes, nor the test ids' common
 * prefix), no byte of a body, no credential. Read as Redis sees it: MONITOR (every command and
 * its arguments), a subscriber to the channel, then every key and its value. */
Test(fleet, redis_holds_and_hears_no_id_and_no_personal_data) {
  start_fleet(3, NULL, NULL, 1000);
  redisContext *monitor = redis_connect(), *subscriber = redis_connect();
  cr_assert(monitor && subscriber);
  freeReplyObject(redisCommand(monitor, "MONITOR"));
  freeReplyObject(redisCommand(subscriber, "SUBSCRIBE " PREFIX "events"));
  enum { N = 30 };
  char ids[N][40];
  for (unsigned i = 0; i < N; i++) {
    id_of(ids[i], 0xabc000 + i);
    for (size_t h = 0; h < 3; h++) {
      struct http_response r;
      get_enrollment_from(&hosts[(i + h) % 3], ids[i], &r);
      cr_assert_eq(r.status, 200);
      http_response_free(&r);
      if (h == 0)
        wait_in_redis(ids[i]);
    }
  }
  char path[128];
  snprintf(path, sizeof(path), "/cache/enrollments/%s", ids[0]);
  struct http_response purge;
  cr_assert_eq(admin_status(1, "DELETE", path, &purge), 200);
  http_response_free(&purge);
  pause_ms(200);
  /* What must not appear, anywhere. */
  const char *secrets[3 * N + 9];
  static char variants[2 * N][40];
  size_t count = 0;
  for (unsigned i = 0; i < N; i++) {
    secrets[count++] = ids[i];
    size_t o = 0;
    for (const char *p = ids[i]; *p; p++)
      if (*p != '-')
        variants[2 * i][o++] = *p;
    variants[2 * i][o] = '\0';
    secrets[count++] = variants[2 * i];
    for (o = 0; ids[i][o]; o++)
      variants[2 * i + 1][o] = (char)toupper((unsigned char)ids[i][o]);
    variants[2 * i + 1][o] = '\0';
    secrets[count++] = variants[2 * i + 1];
  }
  secrets[count++] = "f1ee7000";
  secrets[count++] = "john@example.com";
  secrets[count++] = "123 Main St";
  secrets[count++] = "San Francisco";
  secrets[count++] = "serial_number";
  secrets[count++] = "enrollment";
  secrets[count++] = token;
  secrets[count++] = key_hex;
  size_t seen = 0;
  redisContext *heard[] = {monitor, subscriber};
  for (size_t c = 0; c < 2; c++) {
    redisSetTimeout(heard[c], (struct timeval){0, 300 * 1000});
    void *reply;
    while (redisGetReply(heard[c], &reply) == REDIS_OK) {
      redisReply *line = reply;
      const redisReply *text = line;
      if (line->type == REDIS_REPLY_ARRAY && line->elements == 3)
        text = line->element[2]; /* a message: its payload */
      if (text->type == REDIS_REPLY_STATUS || text->type == REDIS_REPLY_STRING) {
        seen++;
        for (size_t k = 0; k < count; k++)
          cr_expect(!memmem(text->str, text->len, secrets[k], strlen(secrets[k])),
                    "Redis was told \"%s\" (%s)", secrets[k], c ? "a message" : "a command");
      }
      freeReplyObject(reply);
    }
    redisFree(heard[c]);
  }
  cr_expect_gt(seen, 3 * N, "MONITOR and the subscriber heard the fleet");
  redisReply *keys = redis("KEYS *");
  cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
  cr_expect_geq(keys->elements, N - 1, "the entries are there");
  for (size_t i = 0; i < keys->elements; i++) {
    const char *key = keys->element[i]->str;
    redisReply *v = redis("DUMP %s", key);
    for (size_t k = 0; k < count; k++) {
      cr_expect(!strstr(key, secrets[k]), "a key names \"%s\": %s", secrets[k], key);
      cr_expect(!v || v->type != REDIS_REPLY_STRING ||
                !memmem(v->str, v->len, secrets[k], strlen(secrets[k])),
                "the value of %s holds \"%s\"", key, secrets[k]);
    }
    if (v)
      freeReplyObject(v);
  }
  freeReplyObject(keys);
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
