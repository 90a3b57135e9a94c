/* render: error bodies in the upstream's shape, and Cache-Status. */
#include <criterion/criterion.h>
#include <limits.h>
#include <criterion/parameterized.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cache_status.h"
#include "errors.h"

static json_object *field(json_object *object, const char *name) {
  json_object *value = NULL;
  cr_assert(json_object_object_get_ex(object, name, &value), "no field %s", name);
  return value;
}

Test(error_body, invalid_id_matches_the_contract_exactly) {
  char *body = render_error_body(API_ERROR_INVALID_ID);
  json_object *root = json_tokener_parse(body);
  cr_assert_not_null(root, "not JSON: %s", body);
  cr_expect_str_eq(json_object_get_string(field(root, "code")), "invalid_id");
  cr_expect_eq(json_object_get_int(field(root, "status_code")), 422);
  cr_expect_str_eq(json_object_get_string(field(root, "message")), "Input should be a valid UUID");
  json_object *detail = json_object_array_get_idx(field(root, "detail"), 0);
  cr_expect_str_eq(json_object_to_json_string_ext(field(detail, "loc"), JSON_C_TO_STRING_PLAIN),
                   "[\"path\",\"id\"]");
  cr_expect_str_eq(json_object_get_string(field(detail, "msg")), "Input should be a valid UUID");
  cr_expect_str_eq(json_object_get_string(field(detail, "type")), "uuid_parsing");
  json_object *error = json_object_array_get_idx(field(root, "errors"), 0);
  cr_expect_str_eq(json_object_get_string(field(error, "message")), "Input should be a valid UUID");
  cr_expect_str_eq(json_object_get_string(field(error, "path")), "id");
  json_object_put(root);
  free(body);
}

struct error_case {
  enum api_error error;
  char code[40];
  int status;
};

ParameterizedTestParameters(error_body, every_code_has_its_status_and_shape) {
  static struct error_case cases[] = {
    {API_ERROR_INVALID_ID, "invalid_id", 422},
    {API_ERROR_NOT_FOUND, "not_found", 404},
    {API_ERROR_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
    {API_ERROR_BAD_REQUEST, "bad_request", 400},
    {API_ERROR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", 502},
    {API_ERROR_UPSTREAM_TIMEOUT, "upstream_timeout", 504},
    {API_ERROR_UPSTREAM_AUTH_FAILED, "upstream_auth_failed", 502},
    {API_ERROR_UPSTREAM_INVALID_RESPONSE, "upstream_invalid_response", 502},
    {API_ERROR_UPSTREAM_RATE_LIMITED, "upstream_rate_limited", 503},
    {API_ERROR_OVERLOADED, "overloaded", 503},
    {API_ERROR_CIRCUIT_OPEN, "upstream_unavailable", 503},
    {API_ERROR_REQUEST_TIMEOUT, "request_timeout", 408},
    {API_ERROR_URI_TOO_LONG, "uri_too_long", 414},
    {API_ERROR_HEADERS_TOO_LARGE, "headers_too_large", 431},
    {API_ERROR_NOT_IMPLEMENTED, "not_implemented", 501},
    {API_ERROR_VERSION_NOT_SUPPORTED, "http_version_not_supported", 505},
    {API_ERROR_TOO_MANY_CONNECTIONS, "overloaded", 503},
  };
  return cr_make_param_array(struct error_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct error_case *c, error_body, every_code_has_its_status_and_shape) {
  cr_expect_str_eq(api_error_code(c->error), c->code);
  cr_expect_eq(api_error_http_status(c->error), c->status);
  char *body = render_error_body(c->error);
  json_object *root = json_tokener_parse(body);
  cr_assert_not_null(root);
  cr_expect_str_eq(json_object_get_string(field(root, "code")), c->code);
  cr_expect_eq(json_object_get_int(field(root, "status_code")), c->status);
  cr_expect(json_object_is_type(field(root, "detail"), json_type_array));
  cr_expect(json_object_is_type(field(root, "errors"), json_type_array));
  cr_expect(json_object_get_string_len(field(root, "message")) > 0);
  json_object_put(root);
  free(body);
}

/* Strings inline: Criterion runs each parameter in a re-executed worker, where a pointer into
 * the parent's memory would be meaningless. */
struct status_case {
  bool hit;
  int64_t ttl;
  char fwd[16];
  int fwd_status;
  bool stored, collapsed;
  char detail[40];
  char expected[120];
};

ParameterizedTestParameters(cache_status, renders_rfc9211) {
  static struct status_case cases[] = {
    {.hit = true, .ttl = 120, .expected = "flipcached; hit; ttl=120"},
    {.hit = true, .ttl = -30, .expected = "flipcached; hit; ttl=-30"},
    {.fwd = "uri-miss", .stored = true, .expected = "flipcached; fwd=uri-miss; stored"},
    {.fwd = "uri-miss", .collapsed = true, .expected = "flipcached; fwd=uri-miss; collapsed"},
    {.fwd = "stale", .fwd_status = 503, .expected = "flipcached; fwd=stale; fwd-status=503"},
    {.fwd = "stale", .stored = true, .expected = "flipcached; fwd=stale; stored"},
    {.fwd = "uri-miss", .fwd_status = 404, .expected = "flipcached; fwd=uri-miss; fwd-status=404"},
    {.fwd = "uri-miss", .detail = "upstream_timeout",
     .expected = "flipcached; fwd=uri-miss; detail=upstream_timeout"},
    {.detail = "invalid_id", .expected = "flipcached; detail=invalid_id"},
    {.fwd_status = 500, .expected = "flipcached"},
  };
  return cr_make_param_array(struct status_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct status_case *c, cache_status, renders_rfc9211) {
  struct cache_status status = {
    .hit = c->hit, .ttl = c->ttl, .fwd = c->fwd[0] ? c->fwd : NULL, .fwd_status = c->fwd_status,
    .stored = c->stored, .collapsed = c->collapsed, .detail = c->detail[0] ? c->detail : NULL};
  char out[160];
  size_t len = render_cache_status(&status, out, sizeof(out));
  cr_expect_str_eq(out, c->expected);
  cr_expect_eq(len, strlen(c->expected));
}

Test(cache_status, truncates_safely) {
  struct cache_status status = {.fwd = "uri-miss", .fwd_status = 503, .detail = "upstream_unavailable"};
  char out[16];
  size_t len = render_cache_status(&status, out, sizeof(out));
  cr_expect_eq(len, strlen(out));
  cr_expect_lt(len, sizeof(out));
  cr_expect(strncmp(out, "flipcached; fwd", 15) == 0, "got '%s'", out);
}

Test(decimal, every_long_long_in_decimal) {
  char buf[RENDER_DECIMAL_MAX];
  cr_expect_str_eq(render_decimal(0, buf), "0");
  cr_expect_str_eq(render_decimal(200, buf), "200");
  cr_expect_str_eq(render_decimal(-30, buf), "-30");
  cr_expect_str_eq(render_decimal(LLONG_MAX, buf), "9223372036854775807");
  cr_expect_str_eq(render_decimal(LLONG_MIN, buf), "-9223372036854775808");
}

Test(cache_status, a_copy_from_the_shared_tier_names_that_cache_first) {
  /* RFC 9211: the members go from the cache nearest the origin to the one nearest the client. */
  struct cache_status status = {.fwd = "uri-miss", .stored = true, .shared_hit = true,
                                .shared_ttl = 290};
  char out[160];
  render_cache_status(&status, out, sizeof(out));
  cr_expect_str_eq(out, "flipcached-shared; hit; ttl=290, flipcached; fwd=uri-miss; stored");
  status.collapsed = true;
  status.stored = false;
  render_cache_status(&status, out, sizeof(out));
  cr_expect_str_eq(out, "flipcached-shared; hit; ttl=290, flipcached; fwd=uri-miss; collapsed");
}

/* Every status the daemon can send has its phrase from the one table: each error's, and those
 * it sends outside the error table (enrollments and status routes 200, POST /cache/warm 202, a
 * CORS preflight 204, a revalidated entry 304, the upstream's 404 passed on, an admin route's
 * failed cache 500). */
Test(reason_phrase, every_status_the_daemon_sends_has_its_phrase) {
  for (int error = 0; error < API_ERROR_COUNT; error++) {
    int status = api_error_http_status((enum api_error)error);
    const char *phrase = http_reason_phrase(status);
    cr_expect(phrase != NULL && *phrase, "%s's status %d has no reason phrase",
              api_error_code((enum api_error)error), status);
  }
  static const struct {
    int status;
    const char *phrase;
  } sent[] = {
    {200, "OK"}, {202, "Accepted"}, {204, "No Content"}, {304, "Not Modified"},
    {404, "Not Found"}, {409, "Conflict"}, {421, "Misdirected Request"},
    {422, "Unprocessable Content"}, {429, "Too Many Requests"}, {500, "Internal Server Error"},
    {503, "Service Unavailable"}, {505, "HTTP Version Not Supported"},
  };
  for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
    cr_expect_str_eq(http_reason_phrase(sent[i].status), sent[i].phrase);
  cr_expect_null(http_reason_phrase(299), "no phrase is made up for an unregistered code");
}
