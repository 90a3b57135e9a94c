/* Integration tests of the request path: the real flipcached binary against the fake upstream. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID_UPPER "497F6ECA-6276-4993-BFEB-53CBBBBA6F08"
#define ID2 "0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"

static void start_default(void) { start_with(NULL); }

static void expect_header_prefix(const struct http_response *response, const char *name,
                                 const char *prefix) {
  char value[256];
  cr_assert(http_header(response, name, value, sizeof(value)), "no %s header", name);
  cr_expect(strncmp(value, prefix, strlen(prefix)) == 0, "%s is '%s', expected '%s...'", name,
            value, prefix);
}

static void expect_header_contains(const struct http_response *response, const char *name,
                                   const char *part) {
  char value[256];
  cr_assert(http_header(response, name, value, sizeof(value)), "no %s header", name);
  cr_expect(strstr(value, part) != NULL, "%s is '%s', expected it to contain '%s'", name, value,
            part);
}

TestSuite(request_path, .init = start_default, .fini = stop_all, .timeout = 60);

Test(request_path, miss_then_hit_makes_one_upstream_call) {
  struct http_response first, second;
  get_enrollment(ID, &first);
  cr_assert_eq(first.status, 200, "body: %s", first.body);
  cr_expect(strstr(first.body, "\"id\":\"" ID "\"") != NULL);
  expect_header_prefix(&first, "Cache-Status", "flipcached; fwd=uri-miss; stored");
  expect_header_prefix(&first, "Content-Type", "application/json");
  expect_header_prefix(&first, "Age", "0");

  get_enrollment(ID, &second);
  cr_assert_eq(second.status, 200);
  expect_header_prefix(&second, "Cache-Status", "flipcached; hit; ttl=");
  cr_expect(http_header(&second, "Age", (char[16]){0}, 16), "a hit carries Age");
  cr_assert_eq(second.body_len, first.body_len);
  cr_expect(memcmp(second.body, first.body, first.body_len) == 0, "the body is byte for byte");
  cr_expect_eq(fake_count(&fake, ID), 1, "one upstream request for a miss and a hit");
  http_response_free(&first);
  http_response_free(&second);
}

Test(request_path, upper_case_id_hits_the_same_entry) {
  struct http_response lower, upper;
  get_enrollment(ID, &lower);
  cr_assert_eq(lower.status, 200);
  get_enrollment(ID_UPPER, &upper);
  cr_assert_eq(upper.status, 200);
  expect_header_prefix(&upper, "Cache-Status", "flipcached; hit;");
  cr_expect_eq(fake_count(&fake, ID), 1);
  cr_expect_eq(fake_stat(&fake, "total"), 1);
  http_response_free(&lower);
  http_response_free(&upper);
}

Test(request_path, upper_case_id_goes_upstream_in_lower_case) {
  struct http_response response;
  get_enrollment(ID_UPPER, &response);
  cr_assert_eq(response.status, 200);
  cr_expect(strstr(response.body, ID) != NULL);
  cr_expect_eq(fake_count(&fake, ID), 1, "the fake saw the lower-case id");
  http_response_free(&response);
}

struct bad_target {
  char path[160];
  long status;
};

ParameterizedTestParameters(request_path, bad_ids_and_paths_never_go_upstream) {
  static struct bad_target targets[] = {
    {"/v1/enrollments/abc", 422},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f0", 422},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f088", 422},
    {"/v1/enrollments/497f6eca62764993bfeb53cbbbba6f08", 422},
    {"/v1/enrollments/g97f6eca-6276-4993-bfeb-53cbbbba6f08", 422},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08/", 404},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08/devices", 404},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08;x=1", 404},
    {"/v1/enrollments/%2F497f6eca-6276-4993-bfeb-53cbbbba6f0", 404},
    {"/v1/enrollments/497f6eca%2D6276-4993-bfeb-53cbbbba6f08", 404},
    {"/v1/enrollments//497f6eca-6276-4993-bfeb-53cbbbba6f08", 404},
    {"/v1/enrollments/../enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08", 404},
    {"/v1/enrollments/", 404},
    {"/v1/enrollments", 404},
    {"/v2/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f08", 404},
  };
  return cr_make_param_array(struct bad_target, targets, sizeof(targets) / sizeof(targets[0]));
}

ParameterizedTest(struct bad_target *target, request_path, bad_ids_and_paths_never_go_upstream) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", daemon_proc.url, target->path);
  struct http_response response;
  /* curl would normalise "..": send it as given. */
  http_request("GET", url, NULL, &response);
  cr_expect_eq(response.status, target->status, "%s answered %ld", target->path, response.status);
  if (target->status == 422) {
    cr_expect(strstr(response.body, "\"code\":\"invalid_id\"") != NULL, "body: %s", response.body);
    cr_expect(strstr(response.body, "\"loc\":[\"path\",\"id\"]") != NULL, "body: %s", response.body);
    cr_expect(strstr(response.body, "\"type\":\"uuid_parsing\"") != NULL);
    cr_expect(strstr(response.body, "\"status_code\":422") != NULL);
    expect_header_prefix(&response, "Cache-Status", "flipcached; detail=invalid_id");
  }
  cr_expect_eq(fake_stat(&fake, "total"), 0, "%s reached the upstream", target->path);
  http_response_free(&response);
}

Test(request_path, client_authorization_and_cookie_are_not_forwarded) {
  const char *headers[] = {"Authorization: Bearer client-supplied-secret", "Cookie: session=abc",
                           NULL};
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  struct http_response response;
  http_request("GET", url, headers, &response);
  cr_assert_eq(response.status, 200, "body: %s", response.body);
  cr_expect_eq(fake_stat(&fake, "auth_ok"), 1, "the daemon's own credential was sent");
  cr_expect_eq(fake_stat(&fake, "auth_bad"), 0, "the client's Authorization was not sent");
  cr_expect_eq(fake_stat(&fake, "cookie_seen"), 0, "the client's Cookie was not sent");
  http_response_free(&response);

  /* Neither header is part of the key: the same id without them is a hit. */
  struct http_response plain;
  get_enrollment(ID, &plain);
  expect_header_prefix(&plain, "Cache-Status", "flipcached; hit;");
  http_response_free(&plain);
}

Test(request_path, upstream_404_is_passed_on) {
  fake_set_mode(&fake, ID, "404", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_assert_eq(response.status, 404);
  cr_expect(strstr(response.body, "Enrollment not found") != NULL, "the upstream's body: %s",
            response.body);
  expect_header_contains(&response, "Cache-Status", "fwd-status=404");
  http_response_free(&response);
}

Test(request_path, invalid_upstream_bodies_give_502_and_are_not_stored) {
  const char *modes[] = {"garbage", "wrong-id"};
  for (size_t i = 0; i < 2; i++) {
    fake_set_mode(&fake, ID, modes[i], 0);
    struct http_response response;
    get_enrollment(ID, &response);
    cr_expect_eq(response.status, 502, "%s answered %ld", modes[i], response.status);
    cr_expect(strstr(response.body, "\"code\":\"upstream_invalid_response\"") != NULL,
              "body: %s", response.body);
    expect_header_contains(&response, "Cache-Status", "detail=upstream_invalid_response");
    http_response_free(&response);
  }
  /* Nothing was stored: a good answer now is fetched, not served from the cache. */
  fake_set_mode(&fake, ID, "ok", 0);
  struct http_response good;
  get_enrollment(ID, &good);
  cr_expect_eq(good.status, 200);
  expect_header_prefix(&good, "Cache-Status", "flipcached; fwd=uri-miss; stored");
  cr_expect_eq(fake_count(&fake, ID), 3);
  http_response_free(&good);
}

Test(request_path, upstream_500_gives_502_and_is_not_stored) {
  fake_set_mode(&fake, ID, "500", 0);
  struct http_response first, second;
  get_enrollment(ID, &first);
  cr_expect_eq(first.status, 502);
  cr_expect(strstr(first.body, "\"code\":\"upstream_unavailable\"") != NULL);
  expect_header_contains(&first, "Cache-Status", "fwd-status=500");
  get_enrollment(ID, &second);
  cr_expect_eq(second.status, 502);
  cr_expect_eq(fake_count(&fake, ID), 2, "a 500 is never stored");
  http_response_free(&first);
  http_response_free(&second);
}

Test(request_path, upstream_401_gives_502_auth_failed) {
  fake_set_mode(&fake, ID, "401", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_auth_failed\"") != NULL);
  http_response_free(&response);
}

Test(request_path, upstream_429_gives_503_with_retry_after) {
  fake_set_mode(&fake, ID, "429", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 503);
  cr_expect(strstr(response.body, "\"code\":\"upstream_rate_limited\"") != NULL);
  expect_header_prefix(&response, "Retry-After", "7");
  http_response_free(&response);
}

Test(request_path, head_has_headers_and_length_but_no_body) {
  struct http_response get, head;
  get_enrollment(ID, &get);
  cr_assert_eq(get.status, 200);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  http_request("HEAD", url, NULL, &head);
  cr_expect_eq(head.status, 200);
  cr_expect_eq(head.body_len, 0);
  char length[32];
  snprintf(length, sizeof(length), "%zu", get.body_len);
  expect_header_prefix(&head, "Content-Length", length);
  expect_header_prefix(&head, "Cache-Status", "flipcached; hit;");
  http_response_free(&get);
  http_response_free(&head);
}

Test(request_path, other_methods_get_405_with_allow) {
  char url[256];
  struct http_response response;
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 405);
  expect_header_prefix(&response, "Allow", "GET, HEAD");
  cr_expect(strstr(response.body, "\"code\":\"method_not_allowed\"") != NULL);
  http_response_free(&response);

  snprintf(url, sizeof(url), "%s/stats", daemon_proc.url);
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 405);
  expect_header_prefix(&response, "Allow", "GET");
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "total"), 0);
}

Test(request_path, a_body_on_a_get_is_refused) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
                         "Connection: close\r\n\r\nabcd";
  char answer[2048];
  raw_exchange(daemon_proc.port, request, sizeof(request) - 1, answer, sizeof(answer));
  cr_expect(strncmp(answer, "HTTP/1.1 400", 12) == 0, "answered: %.40s", answer);
  cr_expect_eq(fake_stat(&fake, "total"), 0);
}

Test(request_path, stats_count_what_happened) {
  char url[256];
  struct http_response response;
  snprintf(url, sizeof(url), "%s/stats", daemon_proc.url);
  http_get(url, &response);
  long requests_before = json_field(response.body, "requests_total");
  http_response_free(&response);

  get_enrollment(ID, &response);
  http_response_free(&response);
  get_enrollment(ID, &response);
  http_response_free(&response);
  get_enrollment("not-a-uuid", &response);
  http_response_free(&response);

  http_get(url, &response);
  cr_assert_eq(response.status, 200);
  const char *body = response.body;
  cr_expect_eq(json_field(body, "hits"), 1);
  cr_expect_eq(json_field(body, "misses"), 1);
  cr_expect_eq(json_field(body, "upstream_requests"), 1);
  cr_expect_eq(json_field(body, "upstream_errors"), 0);
  cr_expect_eq(json_field(body, "requests_total"), requests_before + 4,
               "the first /stats and three enrollment requests were answered before this one");
  cr_expect_eq(json_field(body, "cache_entries"), 1);
  cr_expect_gt(json_field(body, "cache_bytes"), 0);
  cr_expect_eq(json_field(body, "inflight"), 0);
  const char *fields[] = {"uptime_seconds", "stale_served", "negative_hits", "coalesced",
                          "evictions"};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    cr_expect_geq(json_field(body, fields[i]), 0, "/stats lacks %s", fields[i]);
  cr_expect(strstr(body, "\"version\":\"") != NULL);
  http_response_free(&response);

  snprintf(url, sizeof(url), "%s/healthz", daemon_proc.url);
  http_get(url, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(strstr(response.body, "\"status\":\"ok\"") != NULL);
  http_response_free(&response);

  snprintf(url, sizeof(url), "%s/metrics", daemon_proc.url);
  http_get(url, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(strstr(response.body, "# TYPE flipcached_hits_total counter\nflipcached_hits_total 1\n"),
            "metrics: %s", response.body);
  http_response_free(&response);
}

/* A client that hangs up while its fetch is in flight: the fetch completes, is stored, and the
 * daemon neither crashes nor leaks (the suite also runs under AddressSanitizer). */
Test(request_path, client_hanging_up_mid_fetch_is_harmless) {
  fake_set_mode(&fake, ID, "slow", 400);
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  struct timespec pause = {.tv_nsec = 100 * 1000000L};
  nanosleep(&pause, NULL);
  close(fd);
  struct timespec wait_fetch = {.tv_nsec = 700 * 1000000L};
  nanosleep(&wait_fetch, NULL);

  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  expect_header_prefix(&response, "Cache-Status", "flipcached; hit;");
  cr_expect_eq(fake_count(&fake, ID), 1, "the abandoned fetch was still stored");
  http_response_free(&response);
}

Test(request_path, restart_keeps_entries) {
  struct http_response response;
  get_enrollment(ID, &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);

  flipcached_launch(&daemon_proc);
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  expect_header_prefix(&response, "Cache-Status", "flipcached; hit;");
  cr_expect_eq(fake_count(&fake, ID), 1, "served from the cache that survived the restart");
  http_response_free(&response);
}

Test(request_path, cache_directory_is_private) {
  char path[400];
  snprintf(path, sizeof(path), "%s/cache", daemon_proc.dir);
  struct stat st;
  cr_assert(stat(path, &st) == 0);
  cr_expect_eq(st.st_mode & 0777, 0700, "cache directory mode %o", st.st_mode & 0777);
}

/* --- options other than the defaults -------------------------------------------------------- */

static void no_setup(void) {}

Test(request_path_options, expired_entry_is_fetched_again, .init = no_setup, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {
    .ttl = 1, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 0\n"};
  start_with(&options);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
  /* ttl = 1 s in whole seconds: past 2 s the entry is certainly expired. */
  struct timespec pause = {.tv_sec = 2, .tv_nsec = 100 * 1000000L};
  nanosleep(&pause, NULL);
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  expect_header_prefix(&response, "Cache-Status", "flipcached; fwd=stale; stored");
  cr_expect_eq(fake_count(&fake, ID), 2);
  http_response_free(&response);
}

Test(request_path_options, slow_upstream_gives_504, .init = no_setup, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.timeout_ms = 300};
  start_with(&options);
  fake_set_mode(&fake, ID, "slow", 3000);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 504);
  cr_expect(strstr(response.body, "\"code\":\"upstream_timeout\"") != NULL);
  expect_header_contains(&response, "Cache-Status", "detail=upstream_timeout");
  http_response_free(&response);
}

Test(request_path_options, unreachable_upstream_gives_502, .init = no_setup, .fini = stop_all,
     .timeout = 60) {
  char closed[64];
  snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", free_port());
  struct daemon_options options = {.base_url = closed};
  start_with(&options);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_unavailable\"") != NULL);
  http_response_free(&response);
}

Test(request_path_options, unix_socket_listener_serves_and_is_removed_at_stop, .init = no_setup,
     .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.unix_socket = true};
  start_with(&options);
  struct stat st;
  cr_assert(stat(daemon_proc.unix_socket, &st) == 0);
  cr_expect(S_ISSOCK(st.st_mode));
  cr_expect_eq(st.st_mode & 0777, 0660, "socket mode %o", st.st_mode & 0777);
  struct http_response response;
  http_get_unix(daemon_proc.unix_socket, "http://localhost/v1/enrollments/" ID, &response);
  cr_expect_eq(response.status, 200);
  expect_header_prefix(&response, "Cache-Status", "flipcached; fwd=uri-miss; stored");
  http_response_free(&response);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  cr_expect_neq(stat(daemon_proc.unix_socket, &st), 0, "the socket file is removed at stop");
}

Test(request_path_options, a_regular_file_at_the_socket_path_is_never_replaced, .init = no_setup,
     .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.unix_socket = true, .base_url = "http://127.0.0.1:9"};
  flipcached_prepare(&daemon_proc, NULL, &options);
  FILE *file = fopen(daemon_proc.unix_socket, "w");
  fputs("precious", file);
  fclose(file);
  int status;
  waitpid(flipcached_spawn(&daemon_proc), &status, 0);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "start-up must fail");
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "exists and is not a socket") != NULL, "log:\n%s", log);
  free(log);
  struct stat st;
  cr_expect(stat(daemon_proc.unix_socket, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 8,
            "the file is untouched");
}
