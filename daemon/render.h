/* render: the texts flipcached writes into responses. Pure.
 *
 * Error bodies use the upstream's own shape ({code, detail[{loc,msg,type}], errors[{message,path}],
 * message, status_code}) so that a client handles the daemon's errors and Flip's alike. Messages are
 * fixed strings: nothing from the request, the upstream or the credential is ever echoed into them. */
#ifndef FLIPCACHED_RENDER_H
#define FLIPCACHED_RENDER_H

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

/* RFC 9211 Cache-Status of one enrollment response; rendered as "flipcached; ...". */
struct cache_status {
  bool hit;             /* answered from the cache: "hit; ttl=N" */
  int64_t ttl;          /* with hit: seconds left fresh, negative when a stale copy is served */
  const char *fwd;      /* NULL, or why the request went upstream: "uri-miss", "stale" */
  int fwd_status;       /* with fwd: the upstream's status when it is worth saying (not 200), else 0 */
  bool stored;          /* the upstream's answer was stored */
  bool collapsed;       /* answered by another request's fetch */
  const char *detail;   /* NULL, or a token saying what went wrong, e.g. "upstream_timeout" */
  bool shared_hit;      /* answered by the fleet's shared tier: a "flipcached-shared; hit;
                           ttl=N" member goes first (RFC 9211: the cache nearest the origin) */
  int64_t shared_ttl;   /* with shared_hit: the shared copy's seconds left fresh */
};

/* Room render_decimal needs: "-9223372036854775808" and its NUL. */
#define RENDER_DECIMAL_MAX 21

/* Writes value in decimal, NUL-terminated, at the end of buf; returns where it starts. For the
 * numbers of every header (no printf on the hit path). */
const char *render_decimal(long long value, char buf[RENDER_DECIMAL_MAX]);

/* Writes the header value into out (NUL-terminated, truncated to out_len) and returns its length. */
size_t render_cache_status(const struct cache_status *status, char *out, size_t out_len);

#endif
