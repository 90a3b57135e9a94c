/* Soak: thousands of requests (hits, misses, errors, 404s) leave the daemon's resident memory
 * flat, and so do 20,000 stale ids asked for at once. The memory bounds are skipped under
 * AddressSanitizer, whose quarantine holds freed memory on purpose. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "harness.h"

static void round_of_requests(unsigned round) {
  for (unsigned i = 0; i < 1000; i++) {
    char url[256];
    /* 50 ids seen again and again (hits), a new one now and then (a miss), some 404s */
    unsigned id = i % 10 == 0 ? round * 1000 + i + 100000 : i % 50;
    snprintf(url, sizeof(url), "%s/v1/enrollments/%08x-0000-4000-8000-000000000000%s",
             daemon_proc.url, id, i % 97 == 0 ? "x" : "");
    struct http_response response;
    http_get(url, &response);
    cr_assert(response.status == 200 || response.status == 404 || response.status == 422,
              "HTTP %ld", response.status);
    http_response_free(&response);
  }
}

Test(soak, resident_memory_stays_flat_over_thousands_of_requests, .fini = stop_all, .timeout = 300) {
#ifdef FLIPCACHED_SANITIZED
  cr_skip_test("AddressSanitizer's quarantine keeps freed memory: RSS says nothing here");
#endif
  struct daemon_options options = {.log_level = "warning", .extra_cache = "negative_ttl = 1\n"};
  fixture_start(&fake, &daemon_proc, &options);
  for (unsigned n = 7; n < 50; n += 7) {
    char id[40];
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", n);
    fake_set_mode(&fake, id, "404", 0);
  }
  round_of_requests(0); /* warm up: caches, pools, the map's first pages */
  round_of_requests(1);
  long settled = proc_status_kb(daemon_proc.pid, "VmRSS");
  for (unsigned round = 2; round < 7; round++)
    round_of_requests(round);
  long after = proc_status_kb(daemon_proc.pid, "VmRSS");
  cr_log_info("resident %ld kB after 2,000 requests, %ld kB after 7,000", settled, after);
  /* 500 new entries live in LMDB's page cache, not the heap; allow a little for that. */
  cr_expect_lt(after - settled, 2048, "grew by %ld kB over 5,000 requests", after - settled);
}

#define FILL_ID_FORMAT "b0000000-0000-4000-8000-%012u" /* bench/fill_cache.c's ids */
#define STALE_IDS 20000

/* 20,000 stale ids asked for at once, with an upstream that takes 2 s and then fails: every
 * request is served stale at once, at most max_fetches refreshes run (1024), the failures are
 * written at most once a second, and memory stays flat (the issue measured 315 MB). */
Test(soak, twenty_thousand_stale_ids_at_once_keep_memory_and_work_bounded, .fini = stop_all,
     .timeout = 300) {
  fake.pid = 0;
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token, .log_level = "warning", .max_size = "256M",
                                   .extra_upstream = "breaker_failures = 0\n"};
  flipcached_prepare(&daemon_proc, &fake, &options);
  /* the entries, written straight into the cache directory by the bench's filler: fresh for 0 s,
   * then within stale_while_revalidate (60 s) */
  char body_path[400], command[1200], out[512];
  snprintf(body_path, sizeof(body_path), "%s/body.json", daemon_proc.dir);
  FILE *body = fopen(body_path, "w");
  fprintf(body, "{\"id\":\"497f6eca-6276-4993-bfeb-53cbbbba6f08\",\"name\":\"%0900d\"}", 0);
  fclose(body);
  snprintf(command, sizeof(command), "%s/flipcached-bench-fill %s/cache 256M %d 0 < %s",
           BINARY_DIR, daemon_proc.dir, STALE_IDS, body_path);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_launch(&daemon_proc);
  fake_set_mode(&fake, "*", "500", 2000);

  char (*storage)[160] = calloc(STALE_IDS, sizeof(*storage));
  const char **urls = calloc(STALE_IDS, sizeof(*urls));
  struct http_response *responses = calloc(STALE_IDS, sizeof(*responses));
  cr_assert(storage && urls && responses);
  for (unsigned i = 0; i < STALE_IDS; i++) {
    char id[40];
    snprintf(id, sizeof(id), FILL_ID_FORMAT, i);
    snprintf(storage[i], sizeof(storage[i]), "%s/v1/enrollments/%s", daemon_proc.url, id);
    urls[i] = storage[i];
  }
  long before = proc_status_kb(daemon_proc.pid, "VmHWM");
  http_get_many(urls, STALE_IDS, 32, responses);
  int stale = 0;
  for (unsigned i = 0; i < STALE_IDS; i++) {
    char cache_status[128] = "";
    http_header(&responses[i], "Cache-Status", cache_status, sizeof(cache_status));
    stale += responses[i].status == 200 && strncmp(cache_status, "flipcached; hit; ttl=", 21) == 0;
    http_response_free(&responses[i]);
  }
  cr_expect_eq(stale, STALE_IDS, "every request served stale at once");
  /* Transfers: the fetch slots' (16 over HTTP/1) running, and at most max_fetches (1024)
   * waiting in the background's queue. */
  long peak_fetches = flipcached_stat(&daemon_proc, "inflight");
  cr_expect_leq(peak_fetches, flipcached_stat(&daemon_proc, "fetch_slots") + 1024);
  cr_expect_leq(flipcached_stat(&daemon_proc, "fetches_waiting"), 1024);
  /* the refreshes fail after 2 s; wait for the last of them */
  for (int i = 0; i < 100 && flipcached_stat(&daemon_proc, "inflight") > 0; i++)
    pause_ms(100);
  cr_expect_eq(flipcached_stat(&daemon_proc, "inflight"), 0);
  long after = proc_status_kb(daemon_proc.pid, "VmHWM");
  long refreshes = flipcached_stat(&daemon_proc, "background_refreshes");
  long refused = flipcached_stat(&daemon_proc, "fetches_refused");
  cr_expect_gt(refused, 0, "the bound was met");
  cr_expect_eq(refreshes + refused, STALE_IDS, "each stale id started a refresh or was refused one");
  cr_expect_eq(flipcached_stat(&daemon_proc, "upstream_requests"), fake_stat(&fake, "total"),
               "upstream_requests is what the upstream received");
  char *log = flipcached_log(&daemon_proc);
  int lines = 0;
  for (const char *p = log; (p = strchr(p, '\n')) != NULL; p++)
    lines++;
  cr_expect_lt(lines, 200, "%d log lines for %ld failed refreshes", lines, refreshes);
  free(log);
  cr_log_info("peak resident %ld kB before, %ld kB after %d stale ids (%ld refreshes, %ld refused)",
              before, after, STALE_IDS, refreshes, refused);
#ifndef FLIPCACHED_SANITIZED
  cr_expect_lt(after - before, 64 * 1024, "peak resident memory grew by %ld kB", after - before);
#endif
  free(storage);
  free(urls);
  free(responses);
}
