#include "route.h"

#include <string.h>

static const char ENROLLMENT_PREFIX[] = "/v1/enrollments/";
static const char CACHE_ENTRY_PREFIX[] = "/cache/enrollments/";

bool uuid_canonicalize(const char *text, size_t len, char *out) {
  if (len != UUID_TEXT_LEN)
    return false;
  for (size_t i = 0; i < UUID_TEXT_LEN; i++) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-')
        return false;
      out[i] = c;
    } else if (c >= '0' && c <= '9') {
      out[i] = c;
    } else if (c >= 'a' && c <= 'f') {
      out[i] = c;
    } else if (c >= 'A' && c <= 'F') {
      out[i] = (char)(c - 'A' + 'a');
    } else {
      return false;
    }
  }
  out[UUID_TEXT_LEN] = '\0';
  return true;
}

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
    return not_allowed(out, "DELETE");
  }
  if (path_is(target, path_len, "/stats"))
    return get_or_head(method, out, ROUTE_STATS);
  if (path_is(target, path_len, "/metrics"))
    return get_or_head(method, out, ROUTE_METRICS);
  if (path_is(target, path_len, "/healthz"))
    return get_or_head(method, out, ROUTE_HEALTHZ);
  return out->kind;
}
