/* Bad input from local clients, on raw sockets: each gets a clear 4xx or a closed connection,
 * nothing is stored or sent upstream, and the daemon keeps serving. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static void start(void) { fixture_start(&fake, &daemon_proc, NULL); }

/* The answer to `request` must be a 4xx or nothing (a close); then nothing went upstream,
 * nothing was stored, and a good request is still served. */
static void expect_refused(const char *what, const char *request, size_t len) {
  static char answer[1 << 16];
  size_t got = raw_exchange(daemon_proc.port, request, len, answer, sizeof(answer));
  bool refused = got == 0 || strncmp(answer, "HTTP/1.1 4", 10) == 0 ||
                 strncmp(answer, "HTTP/1.0 4", 10) == 0;
  cr_expect(refused, "%s: answered %.40s", what, answer);
  cr_expect_eq(fake_stat(&fake, "total"), 0, "%s reached the upstream", what);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 0, "%s stored something", what);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200, "%s: the daemon stopped serving", what);
}

static char *repeated(const char *head, char fill, size_t count, const char *tail) {
  size_t head_len = strlen(head), tail_len = strlen(tail);
  char *text = malloc(head_len + count + tail_len + 1);
  memcpy(text, head, head_len);
  memset(text + head_len, fill, count);
  memcpy(text + head_len + count, tail, tail_len + 1);
  return text;
}

TestSuite(client_battery, .init = start, .fini = stop_all, .timeout = 60);

Test(client_battery, a_1_mib_header_line) {
  char *request = repeated("GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nX-Big: ", 'a', 1 << 20,
                           "\r\n\r\n");
  expect_refused("a 1 MiB header", request, strlen(request));
  free(request);
}

Test(client_battery, ten_thousand_headers) {
  size_t cap = 10000 * 16 + 256;
  char *request = malloc(cap);
  size_t len = (size_t)snprintf(request, cap, "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n");
  for (int i = 0; i < 10000; i++)
    len += (size_t)snprintf(request + len, cap - len, "X-%d: v\r\n", i);
  len += (size_t)snprintf(request + len, cap - len, "\r\n");
  expect_refused("10,000 headers", request, len);
  free(request);
}

Test(client_battery, a_100_kb_uri) {
  char *request = repeated("GET /v1/enrollments/", 'a', 100 * 1024, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  expect_refused("a 100 KB URI", request, strlen(request));
  free(request);
}

Test(client_battery, two_content_lengths) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                         "Content-Length: 5\r\n\r\nhello";
  expect_refused("two Content-Lengths", request, sizeof(request) - 1);
}

Test(client_battery, content_length_with_transfer_encoding) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  expect_refused("Content-Length with Transfer-Encoding", request, sizeof(request) - 1);
}

Test(client_battery, an_empty_chunked_body_on_a_get) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  expect_refused("Transfer-Encoding on a GET", request, sizeof(request) - 1);
}

Test(client_battery, a_nul_in_the_request_line) {
  const char request[] = "GET /v1/enrollments/" ID "\0x HTTP/1.1\r\nHost: localhost\r\n\r\n";
  expect_refused("a NUL", request, sizeof(request) - 1);
}

/* RFC 9110 5.5: a NUL in a field value is refused, never cut or passed on. */
Test(client_battery, a_nul_in_a_header_value) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                         "Cookie: a\0b\r\n\r\n";
  expect_refused("a NUL in a header value", request, sizeof(request) - 1);
}

Test(client_battery, random_bytes) {
  unsigned char noise[4096];
  fill_random(noise, sizeof(noise));
  noise[0] = 0x16; /* never a valid method's first byte */
  expect_refused("random bytes", (const char *)noise, sizeof(noise));
}

Test(client_battery, http_0_9) {
  const char request[] = "GET /v1/enrollments/" ID "\r\n\r\n";
  expect_refused("HTTP/0.9", request, sizeof(request) - 1);
}

/* RFC 9110 15.6.6: another major version is 505, and the connection closes. */
Test(client_battery, an_unknown_http_version) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/3.7\r\nHost: localhost\r\n\r\n";
  char answer[4096];
  raw_exchange(daemon_proc.port, request, sizeof(request) - 1, answer, sizeof(answer));
  cr_expect(strncmp(answer, "HTTP/1.1 505", 12) == 0, "answered %.40s", answer);
  cr_expect_eq(fake_stat(&fake, "total"), 0);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200);
}

Test(client_battery, an_absolute_form_uri_with_an_odd_host) {
  const char request[] = "GET http://evil.example/v1/enrollments/" ID " HTTP/1.1\r\n"
                         "Host: another.example\r\n\r\n";
  expect_refused("an absolute-form URI", request, sizeof(request) - 1);
}

/* RFC 9112 2.2 lets a recipient read a bare LF as a line end; flipcached refuses it, so that no
 * two parsers on the path can split one stream differently. */
Test(client_battery, bare_lf_line_endings) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\nHost: x\nConnection: close\n\n";
  expect_refused("bare LF", request, sizeof(request) - 1);
}

Test(client_battery, a_bare_cr_inside_a_header_value) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n";
  expect_refused("a bare CR", request, sizeof(request) - 1);
}

Test(client_battery, whitespace_before_a_colon) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nX-A : a\r\n\r\n";
  expect_refused("whitespace before a colon", request, sizeof(request) - 1);
}

Test(client_battery, an_obs_fold_line) {
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n";
  expect_refused("obs-fold", request, sizeof(request) - 1);
}

Test(client_battery, http_1_1_without_host_or_with_two) {
  const char none[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\n\r\n";
  expect_refused("no Host", none, sizeof(none) - 1);
  const char two[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nHost: y\r\n\r\n";
  expect_refused("two Hosts", two, sizeof(two) - 1);
}

/* RFC 9110 15.6.2: an unrecognized method is 501, answered before any route. */
Test(client_battery, an_unknown_method_is_not_implemented) {
  const char request[] = "BREW /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  char answer[4096];
  raw_exchange(daemon_proc.port, request, sizeof(request) - 1, answer, sizeof(answer));
  cr_expect(strncmp(answer, "HTTP/1.1 501", 12) == 0, "answered %.40s", answer);
  cr_expect_eq(fake_stat(&fake, "total"), 0);
}

/* Not an attack, but the same place: 20 requests in one write are all answered, in order. */
Test(client_battery, twenty_pipelined_requests_in_one_write) {
  char request[20 * 128];
  size_t len = 0;
  for (int i = 0; i < 20; i++)
    len += (size_t)snprintf(request + len, sizeof(request) - len,
                            "GET /v1/enrollments/%08x-0000-4000-8000-000000000000 HTTP/1.1\r\n"
                            "Host: localhost\r\n%s\r\n", i, i == 19 ? "Connection: close\r\n" : "");
  static char answer[1 << 16];
  raw_exchange(daemon_proc.port, request, len, answer, sizeof(answer));
  int answered = 0;
  const char *at = answer;
  for (int i = 0; i < 20; i++) {
    char id[64];
    snprintf(id, sizeof(id), "\"id\":\"%08x-0000-4000-8000-000000000000\"", i);
    const char *found = strstr(at, id);
    if (found) {
      answered++;
      at = found;
    }
  }
  cr_expect_eq(answered, 20, "all twenty, in order");
}
