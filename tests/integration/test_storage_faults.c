/* Storage faults: a damaged, truncated or foreign cache file is moved aside instead of crashing or
 * being misread; an unusable cache directory degrades to serving from the upstream; kill -9 in
 * the middle of writes never loses a committed entry. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static void id_of(unsigned n, char id[40]) { snprintf(id, 40, "%08x-0000-4000-8000-000000000000", n); }

static char *cache_status_of(unsigned n) {
  static char value[128];
  char id[40];
  id_of(n, id);
  struct http_response response;
  get_enrollment_from(&daemon_proc, id, &response);
  value[0] = '\0';
  if (response.status == 200)
    http_header(&response, "Cache-Status", value, sizeof(value));
  http_response_free(&response);
  return value;
}

static void data_path(char *path, size_t len, const char *file) {
  snprintf(path, len, "%s/cache/%s", daemon_proc.dir, file);
}

/* Primes a few entries, stops the daemon, lets `damage` spoil the file, starts it again. */
static void restart_after(void (*damage)(void)) {
  fixture_start(&fake, &daemon_proc, NULL);
  for (unsigned n = 0; n < 20; n++)
    cr_assert(strstr(cache_status_of(n), "stored") != NULL);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  damage();
  flipcached_launch(&daemon_proc);
}

static void expect_moved_aside_and_serving(const char *why) {
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, why) != NULL, "the log says why: %s", log);
  cr_expect(strstr(log, "moved it aside to ") != NULL);
  free(log);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_rebuilds"), 1);
  cr_expect_str_eq(cache_status_of(0), "flipcached; fwd=uri-miss; stored", "refetched and stored again");
  char broken[400];
  snprintf(broken, sizeof(broken), "ls %s/cache/data.mdb.broken-* >/dev/null", daemon_proc.dir);
  char out[256];
  cr_expect_eq(run_command(broken, out, sizeof(out)), 0, "the old file is kept for a post-mortem");
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_set_aside"), 1, "/stats says one is kept");
}

static void overwrite_meta_pages(void) {
  char path[400];
  data_path(path, sizeof(path), "data.mdb");
  int fd = open(path, O_WRONLY);
  char junk[8192];
  memset(junk, 0x5a, sizeof(junk));
  cr_assert_eq(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
  close(fd);
}

static void truncate_to_the_meta_pages(void) {
  char path[400];
  data_path(path, sizeof(path), "data.mdb");
  cr_assert_eq(truncate(path, 8192), 0);
}

static void write_another_format(void) {
  char path[400];
  data_path(path, sizeof(path), "format");
  FILE *file = fopen(path, "w");
  fputs("flipcached cache format 99\n", file);
  fclose(file);
}

TestSuite(storage, .fini = stop_all, .timeout = 120);

Test(storage, a_damaged_file_is_moved_aside) {
  restart_after(overwrite_meta_pages);
  expect_moved_aside_and_serving("data.mdb is damaged");
}

Test(storage, a_truncated_file_is_moved_aside_instead_of_crashing) {
  restart_after(truncate_to_the_meta_pages);
  expect_moved_aside_and_serving("truncated");
}

Test(storage, a_file_of_another_format_is_moved_aside) {
  restart_after(write_another_format);
  expect_moved_aside_and_serving("another format");
}

/* Three damaged starts in a row leave one damaged file, the newest, not three (each can be up to
 * max_size of personal data). */
Test(storage, three_damaged_starts_keep_only_the_newest_damaged_file) {
  restart_after(overwrite_meta_pages);
  for (int start = 0; start < 2; start++) {
    pause_ms(1100); /* a new name: data.mdb.broken-<time> */
    cr_assert(strstr(cache_status_of(100 + start), "stored") != NULL);
    cr_assert_eq(flipcached_stop(&daemon_proc), 0);
    overwrite_meta_pages();
    flipcached_launch(&daemon_proc);
  }
  char command[400], out[1024] = "";
  snprintf(command, sizeof(command), "ls %s/cache | grep -c '^data.mdb.broken-'", daemon_proc.dir);
  for (int i = 0; i < 40; i++) {
    run_command(command, out, sizeof(out));
    if (atoi(out) == 1)
      break;
    pause_ms(50);
  }
  cr_expect_eq(atoi(out), 1, "damaged files kept: %s", out);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_set_aside"), 1);
  snprintf(command, sizeof(command), "rm %s/cache/data.mdb.broken-*", daemon_proc.dir);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_set_aside"), 0, "an operator removed it");
}

Test(storage, an_unusable_cache_directory_degrades_to_the_upstream) {
  fake.pid = 0;
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token};
  flipcached_prepare(&daemon_proc, &fake, &options);
  /* [cache] path under a regular file: it can never be created */
  char blocker[400];
  snprintf(blocker, sizeof(blocker), "%s/cache", daemon_proc.dir);
  FILE *file = fopen(blocker, "w");
  fputs("not a directory", file);
  fclose(file);
  FILE *config = fopen(daemon_proc.config, "r+");
  char text[4096];
  size_t len = fread(text, 1, sizeof(text) - 1, config);
  text[len] = '\0';
  char *path_line = strstr(text, "\npath = ");
  cr_assert_not_null(path_line);
  char *line_end = strchr(path_line + 1, '\n');
  char rewritten[4096];
  snprintf(rewritten, sizeof(rewritten), "%.*s\npath = %s/cache/inner%s", (int)(path_line - text),
           text, daemon_proc.dir, line_end);
  fclose(config);
  config = fopen(daemon_proc.config, "w");
  fputs(rewritten, config);
  fclose(config);
  flipcached_launch(&daemon_proc);

  cr_expect_str_eq(cache_status_of(1), "flipcached; fwd=uri-miss", "served, not stored");
  cr_expect_str_eq(cache_status_of(1), "flipcached; fwd=uri-miss", "asked again: nothing cached");
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", daemon_proc.url);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 200, "it still serves");
  cr_expect(strstr(response.body, "\"cache\":\"unavailable\"") != NULL, "%s", response.body);
  cr_expect(strstr(response.body, "\"status\":\"degraded\"") != NULL, "%s", response.body);
  cr_expect(strstr(response.body, "\"reason\":\"the cache is unavailable (") != NULL, "%s",
            response.body);
  http_response_free(&response);
  cr_expect_gt(flipcached_stat(&daemon_proc, "cache_write_errors"), 0);
}

/* 20 times: a child writes new entries as fast as it can, the daemon is killed with SIGKILL at a
 * random moment; after a restart, every entry whose answer said "stored" is still there. */
Test(storage, kill_9_during_a_write_storm_loses_no_committed_entry, .timeout = 240) {
  /* Room for every round's entries: an eviction would remove entries for another reason. */
  struct daemon_options options = {.max_size = "1G"};
  fixture_start(&fake, &daemon_proc, &options);
  char stored_path[400];
  snprintf(stored_path, sizeof(stored_path), "%s/stored.txt", daemon_proc.dir);
  unsigned next_id = 0;
  unsigned long stored_so_far = 0;
  for (int round = 0; round < 20; round++) {
    unsigned first = next_id;
    unlink(stored_path); /* the last round's list: the wait below must see this round's */
    pid_t writer = fork();
    if (writer == 0) {
      FILE *stored = fopen(stored_path, "w");
      for (unsigned n = first;; n++) {
        if (strstr(cache_status_of(n), "stored")) {
          fprintf(stored, "%u\n", n);
          fflush(stored);
        }
      }
    }
    /* the storm has begun (one entry stored: on a loaded machine that can take a while), then
     * the kill comes at a random moment of it */
    struct stat stored_stat;
    for (int i = 0; i < 500 && (stat(stored_path, &stored_stat) != 0 || stored_stat.st_size == 0); i++)
      pause_ms(10);
    pause_ms(50 + (long)(arc4random_uniform(200)));
    kill(daemon_proc.pid, SIGKILL);
    waitpid(daemon_proc.pid, NULL, 0);
    daemon_proc.pid = 0;
    kill(writer, SIGKILL);
    waitpid(writer, NULL, 0);

    flipcached_launch(&daemon_proc);
    FILE *stored = fopen(stored_path, "r");
    unsigned n, checked = 0;
    while (stored && fscanf(stored, "%u", &n) == 1) {
      cr_expect(strncmp(cache_status_of(n), "flipcached; hit;", 16) == 0,
                "round %d: entry %u was stored, then lost", round, n);
      checked++;
      if (n >= next_id)
        next_id = n + 1;
    }
    if (stored)
      fclose(stored);
    next_id += 1000; /* ids the killed writer may have half-asked for are never reused */
    cr_expect_gt(checked, 0, "round %d stored nothing before the kill", round);
    /* Nothing was evicted in any round (the killed daemons' counters are gone; the entries
     * are not): every entry recorded as stored so far is still counted. */
    stored_so_far += checked;
    cr_expect_geq(flipcached_stat(&daemon_proc, "cache_entries"), (long)stored_so_far,
                  "round %d: entries were evicted", round);
  }
}

/* A reader slot is left behind by a killed daemon only while another process keeps the
 * environment open (otherwise LMDB resets the reader table when the first process opens it):
 * that other process is played here by a child holding a read transaction. */
Test(storage, the_reader_slot_of_a_killed_daemon_is_cleared_at_start_up) {
  fixture_start(&fake, &daemon_proc, NULL);
  cr_assert(strstr(cache_status_of(0), "stored") != NULL);
  int ready[2];
  cr_assert_eq(pipe(ready), 0);
  pid_t holder = fork();
  if (holder == 0) {
    char path[400];
    snprintf(path, sizeof(path), "%s/cache", daemon_proc.dir);
    MDB_env *env;
    MDB_txn *txn;
    if (mdb_env_create(&env) != 0 || mdb_env_open(env, path, MDB_RDONLY, 0600) != 0 ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
      _exit(1);
    cr_assert_eq(write(ready[1], "r", 1), 1);
    pause();
    _exit(0);
  }
  char byte;
  cr_assert_eq(read(ready[0], &byte, 1), 1, "the holder opened the environment");
  kill(daemon_proc.pid, SIGKILL);
  waitpid(daemon_proc.pid, NULL, 0);
  daemon_proc.pid = 0;
  flipcached_launch(&daemon_proc);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "cleared 1 stale reader slot(s) left by a crashed process") != NULL, "%s", log);
  free(log);
  cr_expect(strncmp(cache_status_of(0), "flipcached; hit;", 16) == 0);
  kill(holder, SIGKILL);
  waitpid(holder, NULL, 0);
}

/* The loop's thread never flushes while it serves: stored entries, a delete and a full purge are
 * flushed by the keeper thread alone; the loop's one fsync-family call comes after SIGTERM. */
Test(storage, nothing_is_flushed_on_the_event_loop_but_at_shutdown, .timeout = 120) {
  fake.pid = 0;
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token, .log_level = "info"};
  flipcached_prepare(&daemon_proc, &fake, &options);
  snprintf(daemon_proc.strace_output, sizeof(daemon_proc.strace_output), "%s/strace.txt",
           daemon_proc.dir);
  /* LeakSanitizer stops the world with ptrace, which a traced process cannot: the leak check
   * is the other suites' job (a no-op without AddressSanitizer) */
  snprintf(daemon_proc.env[0], sizeof(daemon_proc.env[0]), "ASAN_OPTIONS=detect_leaks=0");
  flipcached_launch(&daemon_proc);
  pid_t loop_tid = flipcached_daemon_pid(&daemon_proc); /* the main thread's id is the pid */
  cr_assert_gt(loop_tid, 0);
  for (unsigned n = 0; n < 200; n++)
    cr_assert(strstr(cache_status_of(n), "stored") != NULL);
  char url[256], id[40];
  id_of(7, id);
  snprintf(url, sizeof(url), "%s/cache/enrollments/%s", daemon_proc.url, id);
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 200);
  http_response_free(&response);
  pause_ms(1300); /* a flush by the keeper */
  snprintf(url, sizeof(url), "%s/cache", daemon_proc.url);
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 200);
  http_response_free(&response);
  for (unsigned n = 200; n < 300; n++)
    cr_assert(strstr(cache_status_of(n), "stored") != NULL);
  pause_ms(1300);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);

  FILE *trace = fopen(daemon_proc.strace_output, "r");
  cr_assert_not_null(trace);
  char line[512];
  int on_loop_before_stop = 0, on_loop_after_stop = 0, on_keeper = 0;
  bool stopping = false;
  while (fgets(line, sizeof(line), trace)) {
    int tid = atoi(line);
    if (strstr(line, "--- SIGTERM"))
      stopping = true;
    if (!strstr(line, "sync") || strstr(line, "---") || strstr(line, "resumed>"))
      continue;
    if (tid != loop_tid)
      on_keeper++;
    else if (stopping)
      on_loop_after_stop++;
    else {
      on_loop_before_stop++;
      cr_log_error("on the loop: %s", line);
    }
  }
  fclose(trace);
  cr_expect_eq(on_loop_before_stop, 0, "the loop flushed while serving");
  cr_expect_geq(on_keeper, 2, "the keeper flushes every second");
  cr_expect_geq(on_loop_after_stop, 1, "the last flush at shutdown");
}

/* Rewrites every record of the stopped daemon's cache in format 1 (before the ETag: the first
 * 36 bytes of the header, then the body), as a cache file of the previous version has them. */
static void rewrite_records_as_format_1(void) {
  char path[400];
  snprintf(path, sizeof(path), "%s/cache", daemon_proc.dir);
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi records;
  MDB_cursor *cursor;
  cr_assert_eq(mdb_env_create(&env), 0);
  cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
  cr_assert_eq(mdb_env_open(env, path, 0, 0600), 0);
  cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
  cr_assert_eq(mdb_dbi_open(txn, "records", 0, &records), 0);
  cr_assert_eq(mdb_cursor_open(txn, records, &cursor), 0);
  MDB_val key, value;
  /* Read every record first, then write: a put may move what a cursor walks. */
  struct {
    unsigned char key[8];
    unsigned char *v1;
    size_t len;
  } rewrites[32];
  size_t rewritten = 0;
  for (int rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0 && rewritten < 32;
       rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
    cr_assert_eq(key.mv_size, 8);
    const unsigned char *v2 = (const unsigned char *)value.mv_data + 36; /* after the id */
    cr_assert_eq(v2[0], 2, "a format 2 record");
    size_t validators = (size_t)v2[52] + v2[53]; /* Flip's ETag and Last-Modified */
    size_t body_len = value.mv_size - 36 - 56 - validators;
    unsigned char *v1 = malloc(36 + 36 + body_len);
    memcpy(v1, value.mv_data, 36 + 36); /* the id, the header's first 36 bytes */
    memcpy(v1 + 72, v2 + 56 + validators, body_len);
    v1[36] = 1; /* format_version, a little-endian u32 */
    memcpy(rewrites[rewritten].key, key.mv_data, 8);
    rewrites[rewritten].v1 = v1;
    rewrites[rewritten].len = 72 + body_len;
    rewritten++;
  }
  mdb_cursor_close(cursor);
  for (size_t i = 0; i < rewritten; i++) {
    MDB_val k = {.mv_size = 8, .mv_data = rewrites[i].key};
    MDB_val v = {.mv_size = rewrites[i].len, .mv_data = rewrites[i].v1};
    cr_assert_eq(mdb_put(txn, records, &k, &v, 0), 0);
    free(rewrites[i].v1);
  }
  cr_assert_eq(rewritten, 20);
  cr_assert_eq(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

/* An upgrade keeps the cache: every entry written before the ETag is still a hit, with the
 * ETag its body has (the one a format 2 record of it carried), a 304 for it, and no file moved
 * aside. */
Test(storage, a_cache_written_before_the_etag_is_kept_and_served_with_its_etag) {
  fixture_start(&fake, &daemon_proc, NULL);
  char etags[20][64];
  for (unsigned n = 0; n < 20; n++) {
    char id[40];
    id_of(n, id);
    struct http_response response;
    get_enrollment_from(&daemon_proc, id, &response);
    cr_assert_eq(response.status, 200);
    cr_assert(http_header(&response, "ETag", etags[n], sizeof(etags[n])));
    http_response_free(&response);
  }
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  rewrite_records_as_format_1();
  flipcached_launch(&daemon_proc);
  for (unsigned n = 0; n < 20; n++) {
    char id[40], url[256], etag[64] = "", line[128];
    id_of(n, id);
    cr_expect(strncmp(cache_status_of(n), "flipcached; hit;", 16) == 0, "%s", cache_status_of(n));
    snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, id);
    snprintf(line, sizeof(line), "If-None-Match: %.63s", etags[n]);
    const char *headers[] = {line, NULL};
    struct http_response response;
    http_request(NULL, url, headers, &response);
    http_header(&response, "ETag", etag, sizeof(etag));
    cr_expect_eq(response.status, 304, "entry %u", n);
    cr_expect_str_eq(etag, etags[n]);
    http_response_free(&response);
  }
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "ignored") == NULL, "no entry was refused: %s", log);
  free(log);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_rebuilds"), 0);
  cr_expect_eq(fake_count(&fake, ID), 0);
  cr_expect_eq(flipcached_stat(&daemon_proc, "upstream_requests"), 0, "none since the restart");
}
