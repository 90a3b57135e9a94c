/* log: the rate limit of repeated warnings, with an injected clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "log.h"

static long fake_now;
static long fake_clock(void) { return fake_now; }

static char path[] = "/tmp/flipcached-log.XXXXXX";
static int saved_stderr = -1;

/* stderr goes to a file for the test. */
static void capture(void) {
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  saved_stderr = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
  log_set_limit_clock(fake_clock);
}

static char *captured(void) {
  FILE *file = fopen(path, "r");
  static char text[65536];
  size_t len = fread(text, 1, sizeof(text) - 1, file);
  text[len] = '\0';
  fclose(file);
  return text;
}

static void release(void) {
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  unlink(path);
  log_set_limit_clock(NULL);
}

static int count(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

static void fail_id(unsigned n) { log_warning_limited("upstream: enrollment %u failed", n); }
static void other_kind(unsigned n) { log_warning_limited("cache: %u not stored", n); }

Test(log, a_repeated_warning_is_written_once_a_second_and_the_rest_counted, .init = capture,
     .fini = release) {
  fake_now = 100;
  for (unsigned n = 0; n < 1000; n++)
    fail_id(n);
  other_kind(1); /* another kind has its own limit */
  char *text = captured();
  cr_expect_eq(count(text, "failed"), 1, "%s", text);
  cr_expect(strstr(text, "upstream: enrollment 0 failed") != NULL);
  cr_expect_eq(count(text, "not stored"), 1);
  fake_now = 101;
  fail_id(5000);
  text = captured();
  cr_expect(strstr(text, "999 more lines like \"upstream: enrollment 0 failed\" suppressed") != NULL,
            "the line written, never its format: %s", text);
  cr_expect(strstr(text, "%u") == NULL, "%s", text);
  cr_expect(strstr(text, "upstream: enrollment 5000 failed") != NULL);
  cr_expect_eq(count(text, "suppressed"), 1, "nothing suppressed of the other kind");
}

static void long_line(void) {
  log_warning_limited("refused %s from %s", "GET", /* 200 characters */
                      "a-client-whose-name-goes-on-and-on-and-on-and-on-and-on-and-on-and-on-and-"
                      "on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-"
                      "and-on-and-on-and-on-and-on-and-on-and-on-and-on");
}

Test(log, a_long_line_is_named_cut_short_in_its_suppression_line, .init = capture,
     .fini = release) {
  fake_now = 300;
  for (int i = 0; i < 3; i++)
    long_line();
  fake_now = 301;
  log_flush_suppressed();
  const char *report = strstr(captured(), "2 more lines like \"refused GET from a-client-whose");
  cr_assert(report != NULL, "%s", captured());
  const char *end = strstr(report, "...\" suppressed (at most one a second)");
  cr_expect(end != NULL, "cut short with ...: %s", report);
  cr_expect(end && end - report < 160, "at most about 120 characters of the line");
}

Test(log, a_flood_that_stops_is_still_counted_at_the_next_flush, .init = capture,
     .fini = release) {
  fake_now = 200;
  for (unsigned n = 0; n < 10; n++)
    fail_id(n);
  log_flush_suppressed();
  cr_expect_eq(count(captured(), "suppressed"), 0, "not within the same second");
  fake_now = 201;
  log_flush_suppressed();
  cr_expect(strstr(captured(), "9 more lines like") != NULL, "%s", captured());
  log_flush_suppressed();
  cr_expect_eq(count(captured(), "suppressed"), 1, "reported once");
}

Test(log, the_access_line_leaves_out_the_query_and_names_who_asked, .init = capture,
     .fini = release) {
  log_set_level(LOG_LEVEL_INFO);
  log_access("GET", "/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08?email=a@b", 200,
             "flipcached; hit; ttl=5", 0.25, "uid=1000 pid=42");
  char long_target[400] = "/";
  memset(long_target + 1, 'a', 300);
  log_access("GET", long_target, 404, NULL, 1.0, "uid=?");
  fflush(stderr);
  const char *text = captured();
  cr_expect(strstr(text, "access: GET /v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08 200 "
                         "\"flipcached; hit; ttl=5\" 0.2 ms uid=1000 pid=42") ||
            strstr(text, "access: GET /v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08 200 "
                         "\"flipcached; hit; ttl=5\" 0.3 ms uid=1000 pid=42"), "%s", text);
  cr_expect(strstr(text, "email") == NULL, "the query is the client's data");
  char expected[260] = "access: GET /";
  memset(expected + strlen(expected), 'a', 199);
  strcat(expected, " 404 \"-\" 1.0 ms uid=?");
  cr_expect(strstr(text, expected), "the path cut at 200 characters: %s", text);
}
