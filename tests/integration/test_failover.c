/* The shared tier through Redis Sentinel ([shared] sentinels), against the real thing: a master,
 * a replica and three redis-server --sentinel on loopback, and two real daemons on them. The
 * master killed while clients ask (every answer 200, then sharing through the promoted replica),
 * the old master back as a replica, a sentinel down or lying, every sentinel down, a purge the
 * failover lost, a purge issued while there was no master, and AUTH on both sides. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"
#include "redis_peers.h"
#include "seal.h"

#define HOSTS 2
#define SENTINELS 3
#define MASTER_NAME "flip"
#define PREFIX "flipcached:"

static struct redis_peer master, replica, sentinels[SENTINELS];
static struct flipcached_proc hosts[HOSTS];
static size_t host_count;
static char dir[256];
static char token[64];
static char key_path[320], key_text[80];
static struct seal_keys fleet_keys;
static pid_t liar_pid;
static int liar_port;

/* ---- the servers ------------------------------------------------------------------------- */

/* The value of `field` in a flat [field, value, ...] reply (SENTINEL master), or -1. */
static long flat_field(const struct redis_peer *peer, const char *field, const char *format,
                       const char *arg) {
  redisReply *r = redis_peer_command(peer, format, arg);
  long value = -1;
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
    if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, field) == 0)
      value = atol(r->element[i + 1]->str);
  if (r)
    freeReplyObject(r);
  return value;
}

static bool replica_synced(const struct redis_peer *peer) {
  return redis_peer_reply_has(peer, "master_link_status:up", "INFO replication");
}

/* Until every sentinel knows the replica and the other sentinels (they find each other through
 * the master's hello channel, every 2 s): only then can they agree on a failover. */
static void wait_sentinels_ready(void) {
  for (size_t s = 0; s < SENTINELS; s++) {
    bool ready = false;
    for (int i = 0; i < 400 && !ready; i++) {
      ready = flat_field(&sentinels[s], "num-other-sentinels", "SENTINEL master %s",
                         MASTER_NAME) == SENTINELS - 1 &&
              flat_field(&sentinels[s], "num-slaves", "SENTINEL master %s", MASTER_NAME) == 1;
      if (!ready)
        pause_ms(50);
    }
    cr_assert(ready, "sentinel %zu never saw the others and the replica", s);
  }
}

/* A master and its replica (synced), with password as every data node's requirepass ("" none),
 * and three sentinels monitoring it, sentinel_password their own ("" none); not waited for
 * when start_sentinels is false. */
static void start_servers(const char *password, const char *sentinel_password,
                          bool start_sentinels) {
  snprintf(dir, sizeof(dir), "/tmp/flipsentinel.XXXXXX");
  cr_assert(mkdtemp(dir));
  snprintf(master.password, sizeof(master.password), "%s", password);
  redis_peer_start(&master, dir, "master", NULL);
  char master_port[16];
  snprintf(master_port, sizeof(master_port), "%d", master.port);
  snprintf(replica.password, sizeof(replica.password), "%s", password);
  const char *replica_args[] = {"--replicaof", "127.0.0.1", master_port,
                                password[0] ? "--masterauth" : NULL, password, NULL};
  redis_peer_start(&replica, dir, "replica", replica_args);
  /* The old master comes back as a replica of whichever is master: it needs masterauth too. */
  if (password[0]) {
    snprintf(master.args[master.arg_count++], sizeof(master.args[0]), "--masterauth");
    snprintf(master.args[master.arg_count++], sizeof(master.args[0]), "%s", password);
  }
  for (int i = 0; i < 400 && !replica_synced(&replica); i++)
    pause_ms(25);
  cr_assert(replica_synced(&replica), "the replica never synced");
  for (size_t s = 0; s < SENTINELS; s++) {
    snprintf(sentinels[s].password, sizeof(sentinels[s].password), "%s", sentinel_password);
    sentinels[s].port = free_port();
  }
  if (!start_sentinels)
    return;
  for (size_t s = 0; s < SENTINELS; s++) {
    char name[16];
    snprintf(name, sizeof(name), "sentinel%zu", s);
    redis_peer_start_sentinel(&sentinels[s], dir, name, MASTER_NAME, master.port, password);
  }
  wait_sentinels_ready();
}

static void start_all_sentinels(void) {
  for (size_t s = 0; s < SENTINELS; s++) {
    char name[16];
    snprintf(name, sizeof(name), "sentinel%zu", s);
    redis_peer_start_sentinel(&sentinels[s], dir, name, MASTER_NAME, master.port,
                              master.password);
  }
}

/* ---- the hosts ----------------------------------------------------------------------------- */

static const char *first_sentinels; /* set before start_hosts: addresses listed before the three */
static const char *host_extra;      /* more [shared] lines for every host */

static void start_hosts(size_t n, bool wait_for_tier) {
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  fleet_write_shared_key(dir, key_path, key_text);
  char err[200];
  cr_assert_eq(seal_keys_parse(key_text, strlen(key_text), &fleet_keys, err, sizeof(err)), 0);
  char list[512] = "";
  if (first_sentinels)
    snprintf(list, sizeof(list), "%s ", first_sentinels);
  for (size_t s = 0; s < SENTINELS; s++)
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "127.0.0.1:%d ",
             sentinels[s].port);
  char sections[2048];
  snprintf(sections, sizeof(sections),
           "[shared]\nsentinels = %s\nsentinel_master = " MASTER_NAME "\ntimeout_ms = 300\n"
           "key_file = %s\n%s",
           list, key_path, host_extra ? host_extra : "");
  struct daemon_options options = {.token = token, .extra_sections = sections,
                                   .log_level = "info", .timeout_ms = 3000};
  host_count = n;
  for (size_t i = 0; i < n; i++)
    flipcached_start(&hosts[i], &fake, &options);
  for (size_t i = 0; wait_for_tier && i < n; i++) {
    long state = flipcached_stat(&hosts[i], "shared_state");
    for (int w = 0; state != 1 && w < 500; w++) {
      pause_ms(20);
      state = flipcached_stat(&hosts[i], "shared_state");
    }
    cr_assert_eq(state, 1, "host %zu never reached the master", i);
  }
}

static void stop_everything(void) {
  first_sentinels = NULL;
  host_extra = NULL;
  for (size_t i = 0; i < host_count; i++) {
    if (hosts[i].pid > 0)
      cr_expect_eq(flipcached_stop(&hosts[i]), 0, "host %zu must exit 0 on SIGTERM", i);
    if (!getenv("KEEP_DIR"))
      remove_tree(hosts[i].dir);
  }
  fake_stop(&fake);
  if (liar_pid > 0) {
    kill(liar_pid, SIGKILL);
    waitpid(liar_pid, NULL, 0);
    liar_pid = 0;
  }
  for (size_t s = 0; s < SENTINELS; s++)
    redis_peer_kill(&sentinels[s]);
  redis_peer_kill(&replica);
  redis_peer_kill(&master);
  if (!getenv("KEEP_DIR")) /* KEEP_DIR=1: the servers' and hosts' logs stay, for a post-mortem */
    remove_tree(dir);
}

/* A string field of a host's /stats or /healthz (path), into out ("" when absent). */
static void host_text(size_t host, const char *path, const char *field, char *out, size_t len) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", hosts[host].url, path);
  struct http_response r;
  http_get(url, &r);
  json_object *root = json_tokener_parse(r.body ? r.body : ""), *value;
  out[0] = '\0';
  if (root && json_object_object_get_ex(root, field, &value))
    snprintf(out, len, "%s", json_object_get_string(value));
  json_object_put(root);
  http_response_free(&r);
}

static void address_of(const struct redis_peer *peer, char out[32]) {
  snprintf(out, 32, "127.0.0.1:%d", peer->port);
}

/* Waits (bounded) until a host shares through `peer`: the tier up on it. */
static bool wait_master(size_t host, const struct redis_peer *peer, long timeout_ms) {
  char want[32], seen[80];
  address_of(peer, want);
  for (long waited = 0; waited <= timeout_ms; waited += 50) {
    host_text(host, "/stats", "shared_master", seen, sizeof(seen));
    if (strcmp(seen, want) == 0 && flipcached_stat(&hosts[host], "shared_state") == 1)
      return true;
    pause_ms(50);
  }
  return false;
}

static long wait_stat_at_least(size_t host, const char *field, long least, long timeout_ms) {
  long seen = flipcached_stat(&hosts[host], field);
  for (long waited = 0; seen < least && waited < timeout_ms; waited += 20) {
    pause_ms(20);
    seen = flipcached_stat(&hosts[host], field);
  }
  return seen;
}

static void id_of(char *out, unsigned i) { sprintf(out, "5e471e10-0000-4000-8000-%012x", i); }

static long ask(size_t host, const char *id) {
  struct http_response r;
  get_enrollment_from(&hosts[host], id, &r);
  long status = r.status;
  http_response_free(&r);
  return status;
}

static bool entry_in(const struct redis_peer *peer, const char *id) {
  char name[SEAL_NAME_HEX + 1];
  seal_name(&fleet_keys, 0, id, name);
  redisReply *r = redis_peer_command(peer, "EXISTS " PREFIX "e:%s", name);
  bool in = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  if (r)
    freeReplyObject(r);
  return in;
}

static void wait_entry_in(const struct redis_peer *peer, const char *id) {
  for (int i = 0; i < 100 && !entry_in(peer, id); i++)
    pause_ms(20);
  cr_assert(entry_in(peer, id), "%s never reached redis on port %d", id, peer->port);
}

/* One new id asked on host 0, then on host 1: shared when host 1's answer cost no request. */
static void expect_shared_through_the_tier(unsigned n) {
  char id[40];
  id_of(id, n);
  cr_assert_eq(ask(0, id), 200);
  struct redis_peer *now = wait_master(1, &replica, 0) ? &replica : &master;
  wait_entry_in(now, id);
  cr_assert_eq(ask(1, id), 200);
  cr_expect_eq(fake_count(&fake, id), 1, "one upstream request for two hosts (%s)", id);
}

TestSuite(failover, .fini = stop_everything, .timeout = 180);

Test(failover, two_hosts_share_through_the_master_the_sentinels_name) {
  start_servers("", "", true);
  start_hosts(2, true);
  for (size_t h = 0; h < 2; h++)
    cr_expect(wait_master(h, &master, 0), "host %zu uses the master", h);
  expect_shared_through_the_tier(1);
  char status[32], master_seen[80];
  host_text(0, "/healthz", "status", status, sizeof(status));
  cr_expect_str_eq(status, "ok");
  host_text(0, "/healthz", "shared_master", master_seen, sizeof(master_seen));
  char want[32];
  address_of(&master, want);
  cr_expect_str_eq(master_seen, want);
  struct http_response metrics;
  char url[256];
  snprintf(url, sizeof(url), "%s/metrics", hosts[0].url);
  http_get(url, &metrics);
  char line[128];
  snprintf(line, sizeof(line), "flipcached_shared_master_info{address=\"%s\"} 1", want);
  cr_expect(strstr(metrics.body, line), "/metrics names the master: %s", line);
  cr_expect(strstr(metrics.body, "flipcached_shared_switches_total 0"));
  http_response_free(&metrics);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_switches"), 0);
}

/* The test: clients on both hosts ask for new and cached ids while the master dies and
 * the sentinels promote the replica; every answer is 200; then the hosts share through it. */
Test(failover, the_master_killed_every_answer_is_200_and_the_hosts_share_through_the_new_one) {
  start_servers("", "", true);
  start_hosts(2, true);
  expect_shared_through_the_tier(1);
  char cached[40];
  id_of(cached, 1);
  redis_peer_kill(&master);
  long answers = 0, failed = 0;
  unsigned next = 100;
  bool promoted = false;
  for (int round = 0; round < 2000 && !promoted; round++) {
    char id[40];
    id_of(id, next++);
    for (size_t h = 0; h < 2; h++) {
      long fresh = ask(h, id), again = ask(1 - h, cached);
      answers += 2;
      failed += (fresh != 200) + (again != 200);
    }
    promoted = wait_master(0, &replica, 0) && wait_master(1, &replica, 0);
  }
  cr_assert(promoted, "the hosts never shared through the promoted replica");
  cr_expect_eq(failed, 0, "%ld of %ld answers during the failover were not 200", failed, answers);
  cr_expect_gt(answers, 10, "clients asked throughout (%ld answers)", answers);
  for (size_t h = 0; h < 2; h++) {
    cr_expect_eq(flipcached_stat(&hosts[h], "shared_switches"), 1, "host %zu followed one switch", h);
    cr_expect_gt(flipcached_stat(&hosts[h], "shared_unavailable_seconds"), 0);
    char status[32];
    host_text(h, "/healthz", "status", status, sizeof(status));
    cr_expect_str_eq(status, "ok", "host %zu is healthy on the new master", h);
  }
  /* After the promotion, each new id costs one upstream request for both hosts. */
  for (unsigned i = 0; i < 5; i++)
    expect_shared_through_the_tier(10 + i);
  char *log = flipcached_log(&hosts[0]);
  char want[64];
  snprintf(want, sizeof(want), "sharing through the new master 127.0.0.1:%d", replica.port);
  cr_expect(log && strstr(log, want), "the switch is logged: %s", want);
  free(log);
}

Test(failover, the_old_master_back_as_a_replica_is_not_used) {
  start_servers("", "", true);
  start_hosts(2, true);
  redis_peer_kill(&master);
  cr_assert(wait_master(0, &replica, 20000) && wait_master(1, &replica, 5000));
  redis_peer_restart(&master);
  /* The sentinels turn it into a replica of the new master. */
  bool demoted = false;
  for (int i = 0; i < 600 && !demoted; i++) { /* here about 3 s: redis_peer_restart */
    demoted = redis_peer_reply_has(&master, "slave", "ROLE") && replica_synced(&master);
    if (!demoted)
      pause_ms(50);
  }
  cr_assert(demoted, "the sentinels never made the old master a replica");
  expect_shared_through_the_tier(20);
  for (size_t h = 0; h < 2; h++) {
    cr_expect(wait_master(h, &replica, 0), "host %zu stays on the new master", h);
    cr_expect_eq(flipcached_stat(&hosts[h], "shared_switches"), 1);
  }
}

/* A sentinel that is down and one that names the replica come first in the list: the hosts
 * skip the first, refuse what the second says (ROLE: a replica) and ask the next. */
Test(failover, a_sentinel_that_is_down_or_names_a_replica_is_not_followed) {
  start_servers("", "", true);
  liar_port = 0;
  liar_pid = redis_peer_start_liar(&liar_port, replica.port);
  char first[64];
  snprintf(first, sizeof(first), "127.0.0.1:%d 127.0.0.1:%d", free_port(), liar_port);
  first_sentinels = first;
  start_hosts(2, true);
  for (size_t h = 0; h < 2; h++) {
    cr_expect(wait_master(h, &master, 5000), "host %zu uses the real master", h);
    cr_expect_eq(flipcached_stat(&hosts[h], "shared_switches"), 0,
                 "naming the replica was no switch");
  }
  expect_shared_through_the_tier(30);
  char *log = flipcached_log(&hosts[0]);
  cr_expect(log && strstr(log, "not the master the sentinels named"), "the lie is logged");
  free(log);
}

/* The first sentinel names an address where nothing listens: the connection to it is refused,
 * which asks the next sentinel, and the hosts share through the real master. */
Test(failover, a_sentinel_that_names_a_dead_address_is_left_for_the_next) {
  start_servers("", "", true);
  liar_port = 0;
  liar_pid = redis_peer_start_liar(&liar_port, free_port());
  char first[32];
  snprintf(first, sizeof(first), "127.0.0.1:%d", liar_port);
  first_sentinels = first;
  start_hosts(2, true);
  for (size_t h = 0; h < 2; h++)
    cr_expect(wait_master(h, &master, 5000), "host %zu uses the real master", h);
  expect_shared_through_the_tier(35);
}

Test(failover, every_sentinel_down_at_start_the_hosts_serve_then_find_the_master) {
  start_servers("", "", false);
  start_hosts(2, false);
  char id[40];
  id_of(id, 40);
  cr_expect_eq(ask(0, id), 200, "served without the tier");
  cr_expect_eq(ask(1, id), 200);
  char status[32], reason[512];
  host_text(0, "/healthz", "status", status, sizeof(status));
  host_text(0, "/healthz", "shared_reason", reason, sizeof(reason));
  cr_expect_str_eq(status, "degraded");
  cr_expect(strstr(reason, "none has named master " MASTER_NAME), "%s", reason);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_state"), 2);
  start_all_sentinels();
  for (size_t h = 0; h < 2; h++)
    cr_expect(wait_master(h, &master, 15000), "host %zu found the master once they were up", h);
  expect_shared_through_the_tier(41);
}

Test(failover, every_sentinel_down_the_hosts_keep_sharing_and_say_so) {
  start_servers("", "", true);
  start_hosts(2, true);
  for (size_t s = 0; s < SENTINELS; s++)
    redis_peer_kill(&sentinels[s]);
  char status[32] = "", reason[512] = "";
  for (int i = 0; i < 100 && strcmp(status, "degraded") != 0; i++) {
    pause_ms(20);
    host_text(0, "/healthz", "status", status, sizeof(status));
  }
  host_text(0, "/healthz", "reason", reason, sizeof(reason));
  cr_expect_str_eq(status, "degraded");
  cr_expect(strstr(reason, "a failover would not be followed"), "%s", reason);
  cr_expect_eq(flipcached_stat(&hosts[0], "shared_state"), 1, "the master is still in use");
  expect_shared_through_the_tier(50);
}

/* A purge the old master acknowledged but the replica never applied (played by restoring, on
 * the replica, the entry and the generation as they were before it), and a purge issued while
 * there was no master: after the promotion, the host that issued them sends both again, and
 * no host serves either id's pre-purge copy. */
Test(failover, purges_the_failover_lost_or_that_came_meanwhile_are_sent_to_the_new_master) {
  start_servers("", "", true);
  start_hosts(2, true);
  char lost[40], meanwhile[40];
  id_of(lost, 60);
  id_of(meanwhile, 61);
  cr_assert_eq(ask(0, lost), 200);
  cr_assert_eq(ask(0, meanwhile), 200);
  wait_entry_in(&master, lost);
  wait_entry_in(&master, meanwhile);
  cr_assert_eq(ask(1, lost), 200);
  cr_assert_eq(ask(1, meanwhile), 200);
  cr_assert_eq(fake_count(&fake, lost), 1);
  char name[SEAL_NAME_HEX + 1];
  seal_name(&fleet_keys, 0, lost, name);
  redisReply *entry = redis_peer_command(&master, "DUMP " PREFIX "e:%s", name);
  redisReply *gen = redis_peer_command(&master, "GET " PREFIX "gen");
  cr_assert(entry && entry->type == REDIS_REPLY_STRING);
  char path[128];
  snprintf(path, sizeof(path), "%s/cache/enrollments/%s", hosts[0].url, lost);
  struct http_response purge;
  http_request("DELETE", path, NULL, &purge);
  cr_assert_eq(purge.status, 200, "%s", purge.body);
  cr_expect(strstr(purge.body, "\"hosts_notified\":2"), "%s", purge.body);
  http_response_free(&purge);
  for (int i = 0; i < 100 && entry_in(&replica, lost); i++)
    pause_ms(20);
  /* The failover loses the purge: the replica holds what it held before it. */
  freeReplyObject(redis_peer_command(&replica, "CONFIG SET replica-read-only no"));
  freeReplyObject(redis_peer_command(&replica, "RESTORE " PREFIX "e:%s 0 %b REPLACE", name,
                                     entry->str, entry->len));
  if (gen && gen->type == REDIS_REPLY_STRING)
    freeReplyObject(redis_peer_command(&replica, "SET " PREFIX "gen %s", gen->str));
  else
    freeReplyObject(redis_peer_command(&replica, "DEL " PREFIX "gen"));
  freeReplyObject(entry);
  if (gen)
    freeReplyObject(gen);
  cr_assert(entry_in(&replica, lost));
  redis_peer_kill(&master);
  /* No master now: the purge is owed. */
  for (int i = 0; i < 100 && flipcached_stat(&hosts[0], "shared_state") != 2; i++)
    pause_ms(20);
  snprintf(path, sizeof(path), "%s/cache/enrollments/%s", hosts[0].url, meanwhile);
  http_request("DELETE", path, NULL, &purge);
  cr_assert_eq(purge.status, 200, "%s", purge.body);
  cr_expect(strstr(purge.body, "when this host sends the purge"), "%s", purge.body);
  http_response_free(&purge);
  cr_assert(wait_master(0, &replica, 20000) && wait_master(1, &replica, 5000));
  cr_expect_geq(wait_stat_at_least(0, "shared_purges_repeated", 2, 3000), 2,
                "both purges sent again to the new master");
  cr_expect_not(entry_in(&replica, lost), "the lost purge is applied on the new master");
  cr_expect_not(entry_in(&replica, meanwhile), "so is the one issued without a master");
  /* Host 1 heard the repeated purges, whether it subscribed to the new master before host 0
   * repeated them or after (then host 0 answers its hello): neither pre-purge copy is served. */
  cr_assert_geq(wait_stat_at_least(1, "shared_purges_received", 3, 5000), 3,
                "host 1 heard the first purge and both repeated ones");
  cr_assert_eq(ask(1, lost), 200);
  cr_assert_eq(ask(1, meanwhile), 200);
  cr_expect_eq(fake_count(&fake, lost), 2, "asked again after the purge, not the old copy");
  cr_expect_eq(fake_count(&fake, meanwhile), 2);
}

/* password_file is the master's AUTH, sentinel_password_file the sentinels'; neither shows in
 * a log, /stats or /healthz. A host without the sentinels' password says what to set. */
Test(failover, auth_on_the_master_and_on_the_sentinels_works_and_never_shows) {
  start_servers("master-pw-3e1f9a", "sentinel-pw-8c2d41", true);
  char path[320], sentinel_path[320];
  snprintf(path, sizeof(path), "%s/redis-password", dir);
  snprintf(sentinel_path, sizeof(sentinel_path), "%s/sentinel-password", dir);
  write_private_file(path, "master-pw-3e1f9a\n");
  write_private_file(sentinel_path, "sentinel-pw-8c2d41\n");
  char extra[800];
  snprintf(extra, sizeof(extra), "password_file = %s\nsentinel_password_file = %s\n", path,
           sentinel_path);
  host_extra = extra;
  start_hosts(2, true);
  expect_shared_through_the_tier(70);
  char *log = flipcached_log(&hosts[0]);
  char stats[4096], healthz[1024];
  char url[256];
  struct http_response r;
  snprintf(url, sizeof(url), "%s/stats", hosts[0].url);
  http_get(url, &r);
  snprintf(stats, sizeof(stats), "%s", r.body);
  http_response_free(&r);
  snprintf(url, sizeof(url), "%s/healthz", hosts[0].url);
  http_get(url, &r);
  snprintf(healthz, sizeof(healthz), "%s", r.body);
  http_response_free(&r);
  const char *secrets[] = {"master-pw-3e1f9a", "sentinel-pw-8c2d41"};
  for (size_t i = 0; i < 2; i++) {
    cr_expect(log && !strstr(log, secrets[i]), "the log holds %s", secrets[i]);
    cr_expect(!strstr(stats, secrets[i]));
    cr_expect(!strstr(healthz, secrets[i]));
  }
  free(log);
}

Test(failover, a_host_without_the_sentinels_password_is_degraded_and_says_what_to_set) {
  start_servers("", "sentinel-pw-77aa01", true);
  start_hosts(1, false);
  char reason[512] = "";
  for (int i = 0; i < 200 && !strstr(reason, "sentinel_password_file"); i++) {
    pause_ms(20);
    host_text(0, "/healthz", "shared_reason", reason, sizeof(reason));
  }
  cr_expect(strstr(reason, "(set [shared] sentinel_password_file)"), "%s", reason);
  char id[40];
  id_of(id, 80);
  cr_expect_eq(ask(0, id), 200, "served without the tier");
}
