#include "route.h"

#include <stdlib.h>
#include <string.h>

static const char ENROLLMENT_PREFIX[] = "/v1/enrollments/";
static const char CACHE_ENTRY_PREFIX[] = "/cache/enrollments/";

/* A path segment that could be an id: one non-empty segment, no percent-encoding (never decoded,
 * so never accepted), no ";params", and not a dot segment. Anything else is another path. */
static bool is_plain_segment(const char *segment, size_t len) {
  if (len == 0)
    return false;
  if ((len == 1 && segment[0] == '.') || (len == 2 && segment[0] == '.' && segment[1] == '.'))
    return false;
  for (size_t i = 0; i < len; i++) {
    if (segment[i] == '/' || segment[i] == '%' || segment[i] == ';')
      return false;
  }
  return true;
}

static bool path_is(const char *path, size_t len, const char *literal) {
  return strlen(literal) == len && memcmp(path, literal, len) == 0;
}


/* If path is prefix + one plain segment, points *segment at it and returns true. */
static bool one_segment_after(const char *path, size_t path_len, const char *prefix,
                              const char **segment, size_t *segment_len) {
  size_t prefix_len = strlen(prefix);
  if (path_len <= prefix_len || memcmp(path, prefix, prefix_len) != 0)
    return false;
  *segment = path + prefix_len;
  *segment_len = path_len - prefix_len;
  return true;
}

/* The id of a route whose method is already allowed: a canonical UUID, or ROUTE_INVALID_ID. */
static enum route_kind with_id(struct route_match *out, const char *segment, size_t segment_len,
                               enum route_kind kind) {
  out->kind = uuid_canonicalize(segment, segment_len, out->enrollment_id) ? kind : ROUTE_INVALID_ID;
  return out->kind;
}

static enum route_kind not_allowed(struct route_match *out, const char *allow) {
  out->kind = ROUTE_METHOD_NOT_ALLOWED;
  out->allow = allow;
  return out->kind;
}

/* The status routes: GET, and HEAD, which health checkers send (the front end drops the body). */
static enum route_kind get_or_head(enum route_method method, struct route_match *out,
                                   enum route_kind kind) {
  if (method != ROUTE_METHOD_GET && method != ROUTE_METHOD_HEAD)
    return not_allowed(out, "GET, HEAD");
  return out->kind = kind;
}

enum route_kind route_match(const char *target, enum route_method method, struct route_match *out) {
  memset(out, 0, sizeof(*out));
  out->kind = ROUTE_NOT_FOUND;
  if (target == NULL || target[0] != '/')
    return out->kind = ROUTE_BAD_TARGET;

  size_t path_len = strcspn(target, "?");
  const char *segment;
  size_t segment_len;

  if (one_segment_after(target, path_len, ENROLLMENT_PREFIX, &segment, &segment_len)) {
    if (!is_plain_segment(segment, segment_len))
      return out->kind;
    if (method != ROUTE_METHOD_GET && method != ROUTE_METHOD_HEAD)
      return not_allowed(out, "GET, HEAD");
    return with_id(out, segment, segment_len, ROUTE_ENROLLMENT);
  }
  if (one_segment_after(target, path_len, CACHE_ENTRY_PREFIX, &segment, &segment_len)) {
    if (!is_plain_segment(segment, segment_len))
      return out->kind;
    out->admin = true;
    if (method == ROUTE_METHOD_GET)
      return with_id(out, segment, segment_len, ROUTE_CACHE_INSPECT);
    if (method == ROUTE_METHOD_DELETE)
      return with_id(out, segment, segment_len, ROUTE_CACHE_DELETE);
    return not_allowed(out, "GET, DELETE");
  }
  if (path_is(target, path_len, "/cache")) {
    out->admin = true;
    if (method == ROUTE_METHOD_DELETE)
      return out->kind = ROUTE_CACHE_PURGE;
    if (method == ROUTE_METHOD_GET) {
      out->query = target[path_len] == '?' ? target + path_len + 1 : NULL;
      return out->kind = ROUTE_CACHE_LIST;
    }
    return not_allowed(out, "GET, DELETE");
  }
  if (path_is(target, path_len, "/cache/warm")) {
    out->admin = true;
    if (method == ROUTE_METHOD_POST)
      return out->kind = ROUTE_CACHE_WARM;
    return not_allowed(out, "POST");
  }
  if (path_is(target, path_len, "/stats"))
    return get_or_head(method, out, ROUTE_STATS);
  if (path_is(target, path_len, "/metrics"))
    return get_or_head(method, out, ROUTE_METRICS);
  if (path_is(target, path_len, "/healthz"))
    return get_or_head(method, out, ROUTE_HEALTHZ);
  return out->kind;
}

const char *route_parse_cache_page(const char *query, struct cache_page *page) {
  page->after[0] = '\0';
  page->limit = ROUTE_PAGE_DEFAULT_LIMIT;
  bool seen_after = false, seen_limit = false;
  for (const char *p = query; p && *p;) {
    size_t len = strcspn(p, "&");
    const char *value = memchr(p, '=', len);
    size_t name_len = value ? (size_t)(value - p) : len;
    size_t value_len = value ? len - name_len - 1 : 0;
    if (value)
      value++;
    if (name_len == 5 && memcmp(p, "after", 5) == 0) {
      if (seen_after)
        return "after is given twice";
      seen_after = true;
      if (!value || !uuid_canonicalize(value, value_len, page->after))
        return "after is not an enrollment id (a UUID)";
    } else if (name_len == 5 && memcmp(p, "limit", 5) == 0) {
      if (seen_limit)
        return "limit is given twice";
      seen_limit = true;
      unsigned long number = 0;
      for (size_t i = 0; value && i < value_len && number <= ROUTE_PAGE_MAX_LIMIT; i++)
        number = value[i] >= '0' && value[i] <= '9' ? number * 10 + (unsigned long)(value[i] - '0')
                                                   : ROUTE_PAGE_MAX_LIMIT + 1;
      if (!value || value_len == 0 || number == 0 || number > ROUTE_PAGE_MAX_LIMIT)
        return "limit is not a whole number from 1 to 1000";
      page->limit = (unsigned)number;
    } else if (len > 0) {
      return "unknown parameter (only after and limit)";
    }
    p += len;
    if (*p == '&')
      p++;
  }
  return NULL;
}
