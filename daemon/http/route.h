/* route: the raw request target and method -> which route, and the enrollment id.
 *
 * Pure: no I/O, no allocation. The target is matched as it arrived on the wire, before any
 * percent-decoding, so "%2F", "//", "..", a trailing slash or ";params" can never smuggle
 * another path into the enrollment route (a percent-decoding router would turn %2F into '/'). */
#ifndef FLIPCACHED_ROUTE_H
#define FLIPCACHED_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

enum route_method {
  ROUTE_METHOD_GET,
  ROUTE_METHOD_HEAD,
  ROUTE_METHOD_POST,
  ROUTE_METHOD_PUT,
  ROUTE_METHOD_DELETE,
  ROUTE_METHOD_OTHER,
};

enum route_kind {
  ROUTE_NOT_FOUND,          /* 404: no such path */
  ROUTE_BAD_TARGET,         /* 400: not an origin-form target ("/..."): absolute-form, "*", empty */
  ROUTE_METHOD_NOT_ALLOWED, /* 405: a known path, another method; `allow` says which */
  ROUTE_INVALID_ID,         /* 422: the enrollment route with an id that is not a UUID */
  ROUTE_ENROLLMENT,         /* GET or HEAD /v1/enrollments/{uuid}; `enrollment_id` is set */
  ROUTE_STATS,              /* GET or HEAD /stats */
  ROUTE_METRICS,            /* GET or HEAD /metrics */
  ROUTE_HEALTHZ,            /* GET or HEAD /healthz */
  ROUTE_CACHE_INSPECT,      /* GET /cache/enrollments/{uuid} (admin); `enrollment_id` is set */
  ROUTE_CACHE_DELETE,       /* DELETE /cache/enrollments/{uuid} (admin); `enrollment_id` is set */
  ROUTE_CACHE_PURGE,        /* DELETE /cache (admin) */
  ROUTE_CACHE_LIST,         /* GET /cache (admin): a page of entries; `query` is set */
  ROUTE_CACHE_WARM,         /* POST /cache/warm (admin): a warm-up run now */
};

struct route_match {
  enum route_kind kind;
  bool admin;                              /* an admin route (/cache...), whatever the kind */
  const char *allow;                       /* for ROUTE_METHOD_NOT_ALLOWED: the Allow header value */
  char enrollment_id[UUID_TEXT_LEN + 1];   /* for routes with an id: lower case, NUL-terminated */
  const char *query;                       /* for ROUTE_CACHE_LIST: after the '?', or NULL */
};

/* Matches `target` (the request-target exactly as received; a query string is ignored, but for
 * GET /cache's paging, and never forwarded). Always fills `out`; returns out->kind. */
enum route_kind route_match(const char *target, enum route_method method, struct route_match *out);

/* GET /cache's page: ?after=ID&limit=N, both optional, in any order, each at most once. */
#define ROUTE_PAGE_DEFAULT_LIMIT 100
#define ROUTE_PAGE_MAX_LIMIT 1000
struct cache_page {
  char after[UUID_TEXT_LEN + 1]; /* the ids listed start after this one (canonical); "" from the first */
  unsigned limit;                /* 1 to ROUTE_PAGE_MAX_LIMIT entries */
};
/* Parses query (NULL or empty: the first page of ROUTE_PAGE_DEFAULT_LIMIT). NULL when valid,
 * else what is wrong (a fixed text). */
const char *route_parse_cache_page(const char *query, struct cache_page *page);

#endif
