/* The request-head parser: what it accepts, what it refuses and with which status. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

static enum http1_result parse(const char *text, size_t len, struct http1_request *out,
                               int *status, char **buf) {
  *buf = malloc(len + 1);
  memcpy(*buf, text, len);
  size_t scanned = 0;
  *status = 0;
  return http1_parse(*buf, len, &scanned, out, status);
}

Test(http1, a_plain_get) {
  const char text[] = "GET /v1/enrollments/x?y=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nNEXT";
  struct http1_request req;
  int status;
  char *buf;
  cr_assert_eq(parse(text, sizeof(text) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_eq(req.method, HTTP1_GET);
  cr_expect_str_eq(req.target, "/v1/enrollments/x?y=1");
  cr_expect_eq(req.version_minor, 1);
  cr_expect(req.keep_alive);
  cr_expect_not(req.carries_body);
  cr_expect_eq(req.head_len, sizeof(text) - 1 - 4, "the next request is left where it is");
  free(buf);
}

/* RFC 9112 3.2.2: a server must accept absolute-form. Its authority stands for Host (the Host
 * field is ignored) and its path and query are the origin-form target. */
Test(http1, an_absolute_form_target_is_its_path_with_its_authority_as_host) {
  static const struct {
    const char *text, *target, *host;
    bool https;
  } cases[] = {
    {"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", "/healthz", "localhost", false},
    {"GET http://127.0.0.1:8750/v1/enrollments/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
     "/v1/enrollments/x?y=1", "127.0.0.1:8750", false},
    {"GET HTTP://LOCALHOST HTTP/1.1\r\nHost: localhost\r\n\r\n", "/", "LOCALHOST", false},
    {"GET http://localhost?after=x HTTP/1.1\r\nHost: localhost\r\n\r\n", "/", "localhost", false},
    {"GET http://[::1]:8750/stats HTTP/1.0\r\n\r\n", "/stats", "[::1]:8750", false},
    {"GET https://localhost/stats HTTP/1.1\r\nHost: localhost\r\n\r\n", "/stats", "localhost", true},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct http1_request req;
    int status;
    char *buf;
    cr_assert_eq(parse(cases[i].text, strlen(cases[i].text), &req, &status, &buf), HTTP1_COMPLETE,
                 "%s", cases[i].text);
    cr_expect(req.absolute_form);
    cr_expect_eq(req.https, cases[i].https, "%s", cases[i].text);
    cr_expect_str_eq(req.target, cases[i].target);
    cr_expect_eq(req.target_len, strlen(cases[i].target));
    cr_expect(req.host_len == strlen(cases[i].host) &&
                  strncmp(req.host, cases[i].host, req.host_len) == 0,
              "%s: host %.*s", cases[i].text, (int)req.host_len, req.host);
    free(buf);
  }
}

Test(http1, blank_lines_before_the_request_line_are_skipped) {
  const char text[] = "\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
  struct http1_request req;
  int status;
  char *buf;
  cr_assert_eq(parse(text, sizeof(text) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_eq(req.method, HTTP1_HEAD);
  cr_expect_eq(req.head_len, sizeof(text) - 1);
  free(buf);
}

Test(http1, connection_tokens_decide_keep_alive) {
  struct {
    const char *text;
    bool keep_alive;
  } cases[] = {
    {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
    {"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, CLOSE\r\n\r\n", false},
    {"GET / HTTP/1.0\r\n\r\n", false},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
    {"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", true},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct http1_request req;
    int status;
    char *buf;
    cr_assert_eq(parse(cases[i].text, strlen(cases[i].text), &req, &status, &buf), HTTP1_COMPLETE,
                 "%s", cases[i].text);
    cr_expect_eq(req.keep_alive, cases[i].keep_alive, "%s", cases[i].text);
    free(buf);
  }
}

Test(http1, anything_announcing_a_body_is_flagged) {
  const char *cases[] = {
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct http1_request req;
    int status;
    char *buf;
    cr_assert_eq(parse(cases[i], strlen(cases[i]), &req, &status, &buf), HTTP1_COMPLETE);
    cr_expect(req.carries_body, "%s", cases[i]);
    free(buf);
  }
  struct http1_request req;
  int status;
  char *buf;
  const char zero[] = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  cr_assert_eq(parse(zero, sizeof(zero) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_not(req.carries_body);
  free(buf);
}

struct refusal {
  char text[160];
  size_t len; /* 0: strlen */
  int status;
};

ParameterizedTestParameters(http1, refused_with_its_status) {
  static struct refusal cases[] = {
    {"GET /x HTTP/1.1\nHost: x\n\n", 0, 400},                       /* bare LF */
    {"GET /x HTTP/1.1\r\nHost: x\n\r\n", 0, 400},                   /* one bare LF */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA: a\0b\r\n\r\n", 36, 400},     /* NUL in a value */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA: a\rb\r\n\r\n", 0, 400},      /* a lone CR */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA: a\x7f\r\n\r\n", 0, 400},     /* DEL */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA : a\r\n\r\n", 0, 400},        /* space before the colon */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA: a\r\n b\r\n\r\n", 0, 400},   /* obs-fold */
    {"GET /x HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", 0, 400},          /* no name */
    {"GET /x HTTP/1.1\r\nHost: x\r\nA\r\n\r\n", 0, 400},            /* no colon */
    {"GET /x\r\n\r\n", 0, 400},                                     /* HTTP/0.9 */
    {"GET /x HTTP/1.1\r\n\r\n", 0, 400},                            /* no Host */
    {"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400},      /* two Hosts */
    {"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 0, 400},
    {"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 0, 400},
    {"GET  /x HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},                /* two spaces */
    {"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},              /* non-ASCII target */
    {"GET /x HTTP/1.1 \r\nHost: x\r\n\r\n", 0, 400},
    {"GET /x http/1.1\r\nHost: x\r\n\r\n", 0, 400},
    {"GET /x HTTP/11\r\nHost: x\r\n\r\n", 0, 400},
    {"G@T /x HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
    {"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505},
    {"GET /x HTTP/0.9\r\nHost: x\r\n\r\n", 0, 505},
    {"GET /x HTTP/1.2\r\nHost: x\r\n\r\n", 0, 505},            /* llhttp refuses it too */
    /* absolute-form targets that are not http(s) authorities without user info */
    {"GET http://user@localhost/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET http://u:pw@localhost/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET http:///x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET http://:80/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET http:// HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET ftp://localhost/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET localhost/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
    {"GET http://localhost#f HTTP/1.1\r\nHost: localhost\r\n\r\n", 0, 400},
  };
  return cr_make_param_array(struct refusal, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct refusal *c, http1, refused_with_its_status) {
  size_t len = c->len ? c->len : strlen(c->text);
  struct http1_request req;
  int status;
  char *buf;
  cr_expect_eq(parse(c->text, len, &req, &status, &buf), HTTP1_REFUSED, "accepted %s", c->text);
  cr_expect_eq(status, c->status, "%s", c->text);
  free(buf);
}

Test(http1, an_incomplete_head_asks_for_more_and_resumes_where_it_stopped) {
  const char text[] = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  char buf[sizeof(text)];
  memcpy(buf, text, sizeof(text));
  size_t scanned = 0;
  struct http1_request req;
  int status;
  for (size_t len = 1; len < sizeof(text) - 1; len++)
    cr_assert_eq(http1_parse(buf, len, &scanned, &req, &status), HTTP1_INCOMPLETE, "at %zu", len);
  cr_expect_eq(http1_parse(buf, sizeof(text) - 1, &scanned, &req, &status), HTTP1_COMPLETE);
  cr_expect_str_eq(req.target, "/x");
}

Test(http1, limits) {
  size_t size = HTTP1_MAX_HEAD + 100;
  char *buf = malloc(size);
  size_t scanned = 0;
  struct http1_request req;
  int status = 0;
  /* A request line that never ends within the limit: 414. */
  memset(buf, 'a', size);
  memcpy(buf, "GET /", 5);
  cr_expect_eq(http1_parse(buf, size, &scanned, &req, &status), HTTP1_REFUSED);
  cr_expect_eq(status, 414);
  /* Fields that never end within the limit: 431. */
  int len = snprintf(buf, size, "GET / HTTP/1.1\r\nHost: x\r\nX: ");
  memset(buf + len, 'a', size - (size_t)len);
  scanned = 0;
  cr_expect_eq(http1_parse(buf, size, &scanned, &req, &status), HTTP1_REFUSED);
  cr_expect_eq(status, 431);
  free(buf);
  /* More than HTTP1_MAX_FIELDS fields, however small: 431. */
  char many[8192];
  size_t at = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < HTTP1_MAX_FIELDS; i++)
    at += (size_t)snprintf(many + at, sizeof(many) - at, "X%d: v\r\n", i);
  at += (size_t)snprintf(many + at, sizeof(many) - at, "\r\n");
  scanned = 0;
  cr_expect_eq(http1_parse(many, at, &scanned, &req, &status), HTTP1_REFUSED);
  cr_expect_eq(status, 431);
}

Test(http1, methods) {
  const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT",
                         "PATCH", "BREW", "get"};
  enum http1_method expected[] = {HTTP1_GET, HTTP1_HEAD, HTTP1_POST, HTTP1_PUT, HTTP1_DELETE,
                                  HTTP1_OPTIONS, HTTP1_TRACE, HTTP1_CONNECT, HTTP1_PATCH,
                                  HTTP1_UNKNOWN, HTTP1_UNKNOWN};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char text[64];
    int len = snprintf(text, sizeof(text), "%s / HTTP/1.1\r\nHost: x\r\n\r\n", names[i]);
    size_t scanned = 0;
    struct http1_request req;
    int status;
    cr_assert_eq(http1_parse(text, (size_t)len, &scanned, &req, &status), HTTP1_COMPLETE);
    cr_expect_eq(req.method, expected[i], "%s", names[i]);
  }
}

/* The fields the access rules read: the first value of each, trimmed, and how many came. */
Test(http1, host_origin_and_sec_fetch_site_are_captured_for_the_access_rules) {
  const char text[] = "GET / HTTP/1.1\r\nhost:  localhost:8750 \r\nORIGIN: http://a.example\r\n"
                      "Origin: http://b.example\r\nSec-Fetch-Site: cross-site\r\n\r\n";
  struct http1_request req;
  int status;
  char *buf;
  cr_assert_eq(parse(text, sizeof(text) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_eq(req.host_len, strlen("localhost:8750"));
  cr_expect(strncmp(req.host, "localhost:8750", req.host_len) == 0);
  cr_expect_eq(req.origin_count, 2);
  cr_expect(req.origin_len == strlen("http://a.example") &&
            strncmp(req.origin, "http://a.example", req.origin_len) == 0);
  cr_expect_eq(req.fetch_site_count, 1);
  cr_expect(strncmp(req.fetch_site, "cross-site", req.fetch_site_len) == 0);
  free(buf);
  const char plain[] = "GET / HTTP/1.0\r\n\r\n";
  cr_assert_eq(parse(plain, sizeof(plain) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect(req.host == NULL && req.origin == NULL && req.fetch_site == NULL);
  cr_expect(req.origin_count == 0 && req.fetch_site_count == 0);
  free(buf);
}

/* The client's Cache-Control directives (RFC 9111 5.2.1), and Pragma: no-cache without one. */
Test(http1, cache_control_directives_are_read_and_the_rest_ignored) {
  const long ANY = HTTP1_DELTA_MAX;
  const struct {
    const char *fields;
    struct request_directives want;
  } cases[] = {
    {"", {-1, -1, -1, false, false, false}},
    {"Cache-Control: max-age=30\r\n", {30, -1, -1, false, false, false}},
    {"Cache-Control: MAX-AGE=\"5\", only-if-cached\r\n", {5, -1, -1, false, false, true}},
    {"Cache-Control: no-cache\r\n", {-1, -1, -1, true, false, false}},
    {"Cache-Control: max-age=60\r\ncache-control: max-age=10\r\n", {10, -1, -1, false, false, false}},
    {"Cache-Control: no-store, private, max-stale=5\r\n", {-1, -1, 5, false, true, false}},
    {"Cache-Control: max-stale\r\n", {-1, -1, ANY, false, false, false}},
    {"Cache-Control: max-stale, max-stale=7\r\n", {-1, -1, 7, false, false, false}},
    {"Cache-Control: min-fresh=10, min-fresh=\"40\"\r\n", {-1, 40, -1, false, false, false}},
    {"Cache-Control: min-fresh=x, max-stale=-1\r\n", {-1, -1, -1, false, false, false}},
    {"Cache-Control: max-age=99999999999999999999\r\n", {ANY, -1, -1, false, false, false}},
    {"Cache-Control: max-age=abc, max-age=\r\n", {-1, -1, -1, false, false, false}},
    {"Cache-Control: only-if-cached\r\n", {-1, -1, -1, false, false, true}},
    {"Pragma: no-cache\r\n", {-1, -1, -1, true, false, false}},
    {"Pragma: x, No-Cache\r\n", {-1, -1, -1, true, false, false}},
    {"Pragma: no-cache\r\nCache-Control: max-age=5\r\n", {5, -1, -1, false, false, false}},
    {"Pragma: no-cachex\r\n", {-1, -1, -1, false, false, false}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[512];
    snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: localhost\r\n%s\r\n", cases[i].fields);
    struct http1_request req;
    int status;
    char *buf;
    cr_assert_eq(parse(text, strlen(text), &req, &status, &buf), HTTP1_COMPLETE, "%s", text);
    const struct request_directives *got = &req.directives, *want = &cases[i].want;
    cr_expect_eq(got->max_age, want->max_age, "max-age of %s", cases[i].fields);
    cr_expect_eq(got->min_fresh, want->min_fresh, "min-fresh of %s", cases[i].fields);
    cr_expect_eq(got->max_stale, want->max_stale, "max-stale of %s", cases[i].fields);
    cr_expect_eq(got->no_cache, want->no_cache, "no-cache of %s", cases[i].fields);
    cr_expect_eq(got->no_store, want->no_store, "no-store of %s", cases[i].fields);
    cr_expect_eq(got->only_if_cached, want->only_if_cached, "only-if-cached of %s", cases[i].fields);
    free(buf);
  }
}

Test(http1, if_none_match_is_kept_once_and_counted) {
  const char one[] = "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match:  \"x\", W/\"y\" \r\n\r\n";
  struct http1_request req;
  int status;
  char *buf;
  cr_assert_eq(parse(one, sizeof(one) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_eq(req.if_none_match_count, 1);
  cr_expect(req.if_none_match_len == 10 && memcmp(req.if_none_match, "\"x\", W/\"y\"", 10) == 0);
  free(buf);
  const char two[] = "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\nif-none-match: *\r\n\r\n";
  cr_assert_eq(parse(two, sizeof(two) - 1, &req, &status, &buf), HTTP1_COMPLETE);
  cr_expect_eq(req.if_none_match_count, 2, "the front end evaluates no condition then");
  free(buf);
}
