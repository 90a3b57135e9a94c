/* errors: the error answers flipcached writes: the error codes, their statuses, the reason
 * phrases of every status, and the error bodies. Pure.
 *
 * Error bodies use the upstream's own shape ({code, detail[{loc,msg,type}], errors[{message,path}],
 * message, status_code}) so that a client handles the daemon's errors and Flip's alike. Messages are
 * fixed strings: nothing from the request, the upstream or the credential is ever echoed into them. */
#ifndef FLIPCACHED_ERRORS_H
#define FLIPCACHED_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum api_error {
  API_ERROR_INVALID_ID,
  API_ERROR_NOT_FOUND,
  API_ERROR_METHOD_NOT_ALLOWED,
  API_ERROR_BAD_REQUEST,
  API_ERROR_UPSTREAM_UNAVAILABLE,
  API_ERROR_UPSTREAM_TIMEOUT,
  API_ERROR_UPSTREAM_AUTH_FAILED,
  API_ERROR_UPSTREAM_INVALID_RESPONSE,
  API_ERROR_UPSTREAM_RATE_LIMITED,
  API_ERROR_OVERLOADED,
  API_ERROR_CIRCUIT_OPEN, /* code upstream_unavailable, with 503 and Retry-After */
  /* The front end's refusals of a connection or a request head. */
  API_ERROR_REQUEST_TIMEOUT,     /* 408: the head did not arrive within request_timeout */
  API_ERROR_URI_TOO_LONG,        /* 414 */
  API_ERROR_HEADERS_TOO_LARGE,   /* 431: too many or too large header fields */
  API_ERROR_NOT_IMPLEMENTED,     /* 501: a method no route knows */
  API_ERROR_VERSION_NOT_SUPPORTED, /* 505: not HTTP/1.x */
  API_ERROR_TOO_MANY_CONNECTIONS, /* 503 (code overloaded): beyond [server] max_connections */
  /* The access rules (access.h): code forbidden, three messages that say which rule. */
  API_ERROR_FORBIDDEN_USER,      /* 403: not in allow_users or allow_groups */
  API_ERROR_FORBIDDEN_ADMIN,     /* 403: an admin route, not in admin_users or admin_groups */
  API_ERROR_FORBIDDEN_WEB,       /* 403: sent by a web page (Origin, Sec-Fetch-Site) */
  API_ERROR_MISDIRECTED,         /* 421: a Host that is not this daemon's */
  API_ERROR_CLIENT_RATE_LIMITED, /* 429: the user's miss_rate_per_user is spent; Retry-After */
  API_ERROR_NOT_CACHED,          /* 504: only-if-cached, and no usable copy is cached */
  API_ERROR_WARM_NOT_CONFIGURED, /* 409: POST /cache/warm without [warm] program_ids */
  API_ERROR_BAD_PAGE,            /* 400 (code bad_request): GET /cache's after or limit */
  API_ERROR_FORBIDDEN_PAGE_ROUTE, /* 403: a listed web page on another route or method than
                                     GET and HEAD of /v1/enrollments/{id} */
  API_ERROR_COUNT,               /* not an error: how many there are */
};

/* The `code` of the error body, e.g. "invalid_id". */
const char *api_error_code(enum api_error error);
/* The HTTP status that carries it, e.g. 422. */
int api_error_http_status(enum api_error error);
/* The reason phrase of an HTTP status (RFC 9110 15 and the registry's other codes: "Accepted"
 * for 202), from one table; NULL for a status it does not know, which the daemon never sends
 * (tests/unit/test_render.c checks every one it can). */
const char *http_reason_phrase(int status);
/* A malloc'd NUL-terminated JSON error body, or NULL when out of memory. */
char *render_error_body(enum api_error error);

#endif
