/* errors: the error answers flipcached writes (errors.h). */
#include "errors.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

struct api_error_text {
  const char *code;
  int http_status;
  const char *loc[2]; /* detail[].loc; loc[1] may be NULL */
  const char *message;
  const char *type; /* detail[].type */
};

static const struct api_error_text API_ERRORS[] = {
  [API_ERROR_INVALID_ID] = {"invalid_id", 422, {"path", "id"}, "Input should be a valid UUID",
                            "uuid_parsing"},
  [API_ERROR_NOT_FOUND] = {"not_found", 404, {"path", NULL}, "Not found", "not_found"},
  [API_ERROR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, {"method", NULL},
                                    "Method not allowed", "method_not_allowed"},
  [API_ERROR_BAD_REQUEST] = {"bad_request", 400, {"request", NULL},
                             "The request is malformed or carries a body", "bad_request"},
  [API_ERROR_UPSTREAM_UNAVAILABLE] = {"upstream_unavailable", 502, {"upstream", NULL},
                                      "The Flip API could not be reached or failed",
                                      "upstream_unavailable"},
  [API_ERROR_UPSTREAM_TIMEOUT] = {"upstream_timeout", 504, {"upstream", NULL},
                                  "The Flip API did not answer in time", "upstream_timeout"},
  [API_ERROR_UPSTREAM_AUTH_FAILED] = {"upstream_auth_failed", 502, {"upstream", NULL},
                                      "The Flip API rejected the daemon's credentials",
                                      "upstream_auth_failed"},
  [API_ERROR_UPSTREAM_INVALID_RESPONSE] = {"upstream_invalid_response", 502, {"upstream", NULL},
                                           "The Flip API sent an invalid response",
                                           "upstream_invalid_response"},
  [API_ERROR_UPSTREAM_RATE_LIMITED] = {"upstream_rate_limited", 503, {"upstream", NULL},
                                       "The Flip API is rate limiting requests; retry later",
                                       "upstream_rate_limited"},
  [API_ERROR_CIRCUIT_OPEN] = {"upstream_unavailable", 503, {"upstream", NULL},
                              "The Flip API is failing; requests are paused briefly",
                              "upstream_unavailable"},
  [API_ERROR_OVERLOADED] = {"overloaded", 503, {"request", NULL},
                            "Too many requests are waiting for this enrollment; retry shortly",
                            "overloaded"},
  [API_ERROR_REQUEST_TIMEOUT] = {"request_timeout", 408, {"request", NULL},
                                 "The request did not arrive in time", "request_timeout"},
  [API_ERROR_URI_TOO_LONG] = {"uri_too_long", 414, {"request", "target"},
                              "The request target is too long", "uri_too_long"},
  [API_ERROR_HEADERS_TOO_LARGE] = {"headers_too_large", 431, {"request", "headers"},
                                   "The request's header fields are too many or too large",
                                   "headers_too_large"},
  [API_ERROR_NOT_IMPLEMENTED] = {"not_implemented", 501, {"method", NULL},
                                 "The method is not implemented", "not_implemented"},
  [API_ERROR_VERSION_NOT_SUPPORTED] = {"http_version_not_supported", 505, {"request", "version"},
                                       "Only HTTP/1.0 and HTTP/1.1 are supported",
                                       "http_version_not_supported"},
  [API_ERROR_TOO_MANY_CONNECTIONS] = {"overloaded", 503, {"request", NULL},
                                      "Too many connections are open; retry shortly",
                                      "overloaded"},
  [API_ERROR_FORBIDDEN_USER] = {"forbidden", 403, {"peer", NULL},
                                "This local user may not use flipcached (allow_users, allow_groups)",
                                "forbidden"},
  [API_ERROR_FORBIDDEN_ADMIN] = {"forbidden", 403, {"peer", NULL},
                                 "Only flipcached's administrators may use the /cache routes "
                                 "(admin_users, admin_groups)",
                                 "forbidden"},
  [API_ERROR_FORBIDDEN_WEB] = {"forbidden", 403, {"header", "origin"},
                               "Requests sent by web pages are refused (allow_origins)",
                               "forbidden"},
  [API_ERROR_MISDIRECTED] = {"misdirected_request", 421, {"header", "host"},
                             "The Host header does not name this server (host_names)",
                             "misdirected_request"},
  [API_ERROR_CLIENT_RATE_LIMITED] = {"client_rate_limited", 429, {"peer", NULL},
                                     "This user's upstream misses are over miss_rate_per_user; "
                                     "retry after Retry-After seconds",
                                     "client_rate_limited"},
  [API_ERROR_NOT_CACHED] = {"not_cached", 504, {"header", "cache-control"},
                            "Cache-Control: only-if-cached, and no usable copy is cached",
                            "not_cached"},
  [API_ERROR_WARM_NOT_CONFIGURED] = {"not_configured", 409, {"config", "program_ids"},
                                     "No [warm] program_ids are configured", "not_configured"},
  [API_ERROR_BAD_PAGE] = {"bad_request", 400, {"query", NULL},
                          "Paging takes after=ID (an enrollment id) and limit=N (1 to 1000)",
                          "bad_request"},
  [API_ERROR_FORBIDDEN_PAGE_ROUTE] = {"forbidden", 403, {"header", "origin"},
                                      "A web page may only GET or HEAD /v1/enrollments/{id}",
                                      "forbidden"},
};
_Static_assert(sizeof(API_ERRORS) / sizeof(API_ERRORS[0]) == API_ERROR_COUNT,
               "every api_error has its text");

/* RFC 9110 section 15, and 421, 422, 429 and 431 as it and RFC 6585 name them. */
static const struct {
  int status;
  const char *phrase;
} REASON_PHRASES[] = {
  {100, "Continue"}, {101, "Switching Protocols"},
  {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {203, "Non-Authoritative Information"},
  {204, "No Content"}, {205, "Reset Content"}, {206, "Partial Content"},
  {300, "Multiple Choices"}, {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"},
  {304, "Not Modified"}, {305, "Use Proxy"}, {307, "Temporary Redirect"},
  {308, "Permanent Redirect"},
  {400, "Bad Request"}, {401, "Unauthorized"}, {402, "Payment Required"}, {403, "Forbidden"},
  {404, "Not Found"}, {405, "Method Not Allowed"}, {406, "Not Acceptable"},
  {407, "Proxy Authentication Required"}, {408, "Request Timeout"}, {409, "Conflict"},
  {410, "Gone"}, {411, "Length Required"}, {412, "Precondition Failed"},
  {413, "Content Too Large"}, {414, "URI Too Long"}, {415, "Unsupported Media Type"},
  {416, "Range Not Satisfiable"}, {417, "Expectation Failed"}, {421, "Misdirected Request"},
  {422, "Unprocessable Content"}, {426, "Upgrade Required"}, {428, "Precondition Required"},
  {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
  {500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
  {503, "Service Unavailable"}, {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
};

const char *http_reason_phrase(int status) {
  for (size_t i = 0; i < sizeof(REASON_PHRASES) / sizeof(REASON_PHRASES[0]); i++)
    if (REASON_PHRASES[i].status == status)
      return REASON_PHRASES[i].phrase;
  return NULL;
}

const char *api_error_code(enum api_error error) { return API_ERRORS[error].code; }

int api_error_http_status(enum api_error error) { return API_ERRORS[error].http_status; }

char *render_error_body(enum api_error error) {
  const struct api_error_text *text = &API_ERRORS[error];
  json_object *root = json_object_new_object();
  json_object *detail = json_object_new_array();
  json_object *detail_item = json_object_new_object();
  json_object *loc = json_object_new_array();
  json_object *errors = json_object_new_array();
  json_object *errors_item = json_object_new_object();
  char *body = NULL;
  if (!root || !detail || !detail_item || !loc || !errors || !errors_item)
    goto out;

  for (size_t i = 0; i < 2 && text->loc[i]; i++)
    json_object_array_add(loc, json_object_new_string(text->loc[i]));
  json_object_object_add(detail_item, "loc", loc);
  loc = NULL;
  json_object_object_add(detail_item, "msg", json_object_new_string(text->message));
  json_object_object_add(detail_item, "type", json_object_new_string(text->type));
  json_object_array_add(detail, detail_item);
  detail_item = NULL;

  json_object_object_add(errors_item, "message", json_object_new_string(text->message));
  json_object_object_add(errors_item, "path",
                         json_object_new_string(text->loc[1] ? text->loc[1] : text->loc[0]));
  json_object_array_add(errors, errors_item);
  errors_item = NULL;

  json_object_object_add(root, "code", json_object_new_string(text->code));
  json_object_object_add(root, "detail", detail);
  detail = NULL;
  json_object_object_add(root, "errors", errors);
  errors = NULL;
  json_object_object_add(root, "message", json_object_new_string(text->message));
  json_object_object_add(root, "status_code", json_object_new_int(text->http_status));
  body = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
out:
  json_object_put(errors_item);
  json_object_put(errors);
  json_object_put(loc);
  json_object_put(detail_item);
  json_object_put(detail);
  json_object_put(root);
  return body;
}
