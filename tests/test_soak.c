/* Soak: thousands of requests (hits, misses, errors, 404s) leave the daemon's resident memory
 * flat. Skipped under AddressSanitizer, whose quarantine holds freed memory on purpose. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static struct fake_upstream fake;
static struct flipcached_proc daemon_proc;

static void stop_all(void) { fixture_stop(&fake, &daemon_proc); }


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
