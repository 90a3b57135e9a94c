#include "http1.h"

#include <string.h>
#include <strings.h>

static const char *const METHOD_NAMES[] = {
  [HTTP1_GET] = "GET",         [HTTP1_HEAD] = "HEAD",   [HTTP1_POST] = "POST",
  [HTTP1_PUT] = "PUT",         [HTTP1_DELETE] = "DELETE", [HTTP1_OPTIONS] = "OPTIONS",
  [HTTP1_TRACE] = "TRACE",     [HTTP1_CONNECT] = "CONNECT", [HTTP1_PATCH] = "PATCH",
  [HTTP1_UNKNOWN] = "-",
};

const char *http1_method_name(enum http1_method method) { return METHOD_NAMES[method]; }

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return true;
  switch (c) { /* not strchr: this runs for every byte of every method and field name */
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
  case '.': case '^': case '_': case '`': case '|': case '~':
    return true;
  default:
    return false;
  }
}

/* field-value bytes (RFC 9110 5.5): VCHAR, obs-text, SP and HTAB; never NUL, CR, LF, DEL or
 * another control byte. */
static bool is_field_value_byte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static enum http1_method method_of(const char *text, size_t len) {
  for (int m = HTTP1_GET; m < HTTP1_UNKNOWN; m++)
    if (strlen(METHOD_NAMES[m]) == len && memcmp(METHOD_NAMES[m], text, len) == 0)
      return (enum http1_method)m;
  return HTTP1_UNKNOWN;
}

static bool name_is(const char *name, size_t len, const char *expected) {
  return strlen(expected) == len && strncasecmp(name, expected, len) == 0;
}

struct fields_seen {
  size_t hosts;
  size_t content_lengths;
  bool connection_close;
  bool connection_keep_alive;
  bool cache_control;   /* a Cache-Control field came: Pragma is then ignored */
  bool pragma_no_cache;
};

/* Whether a comma-separated list of tokens (Connection, Pragma) has `token`, in any case. */
static bool list_has_token(const char *value, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
      i++;
    size_t start = i;
    while (i < len && value[i] != ',' && value[i] != ' ' && value[i] != '\t')
      i++;
    if (name_is(value + start, i - start, token))
      return true;
  }
  return false;
}

/* The delta-seconds argument of a directive (after its '='): bare or quoted digits, capped at
 * HTTP1_DELTA_MAX; -1 when malformed. */
static long delta_seconds(const char *digits, const char *digits_end) {
  if (digits_end - digits >= 2 && *digits == '"' && digits_end[-1] == '"')
    digits++, digits_end--;
  if (digits >= digits_end)
    return -1;
  long n = 0;
  for (const char *p = digits; p < digits_end; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    n = n > (HTTP1_DELTA_MAX - 9) / 10 ? HTTP1_DELTA_MAX : n * 10 + (*p - '0');
  }
  return n;
}

/* Keeps the stricter of two values of a directive: the smaller, or (larger) the larger. */
static void keep_strictest(long *kept, long seconds, bool larger) {
  if (seconds < 0)
    return;
  if (*kept < 0 || (larger ? seconds > *kept : seconds < *kept))
    *kept = seconds;
}

/* "name=" at the start of item (case-insensitive), with at least one byte after it. */
static const char *argument_of(const char *item, size_t item_len, const char *name) {
  size_t n = strlen(name);
  return item_len > n && strncasecmp(item, name, n) == 0 ? item + n : NULL;
}

/* One Cache-Control field's directives (request_directives in http1.h). */
static void read_cache_control(const char *value, size_t len, struct request_directives *out) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
      i++;
    size_t start = i;
    while (i < len && value[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
      end--;
    const char *item = value + start, *item_end = value + end, *argument;
    size_t item_len = end - start;
    if (name_is(item, item_len, "only-if-cached"))
      out->only_if_cached = true;
    else if (name_is(item, item_len, "no-cache"))
      out->no_cache = true;
    else if (name_is(item, item_len, "no-store"))
      out->no_store = true;
    else if (name_is(item, item_len, "max-stale"))
      keep_strictest(&out->max_stale, HTTP1_DELTA_MAX, false);
    else if ((argument = argument_of(item, item_len, "max-age=")))
      keep_strictest(&out->max_age, delta_seconds(argument, item_end), false);
    else if ((argument = argument_of(item, item_len, "max-stale=")))
      keep_strictest(&out->max_stale, delta_seconds(argument, item_end), false);
    else if ((argument = argument_of(item, item_len, "min-fresh=")))
      keep_strictest(&out->min_fresh, delta_seconds(argument, item_end), true);
  }
}

/* Takes note of the fields that frame the message or the connection, and of those the access
 * rules read (Host, Origin, Sec-Fetch-Site); false: refuse (400). */
static bool read_field(const char *name, size_t name_len, const char *value, size_t value_len,
                       struct fields_seen *seen, struct http1_request *out) {
  if (name_is(name, name_len, "content-length")) {
    if (value_len == 0)
      return false;
    bool zero = true;
    for (size_t i = 0; i < value_len; i++) {
      if (value[i] < '0' || value[i] > '9')
        return false;
      zero = zero && value[i] == '0';
    }
    /* A second Content-Length, even an equal one, is how requests get smuggled. */
    if (++seen->content_lengths > 1 || !zero)
      out->carries_body = true;
  } else if (name_is(name, name_len, "transfer-encoding")) {
    out->carries_body = true;
  } else if (name_is(name, name_len, "connection")) {
    seen->connection_close = seen->connection_close || list_has_token(value, value_len, "close");
    seen->connection_keep_alive =
        seen->connection_keep_alive || list_has_token(value, value_len, "keep-alive");
  } else if (name_is(name, name_len, "host")) {
    if (seen->hosts++ == 0) {
      out->host = value;
      out->host_len = value_len;
    }
  } else if (name_is(name, name_len, "origin")) {
    if (out->origin_count++ == 0) {
      out->origin = value;
      out->origin_len = value_len;
    }
  } else if (name_is(name, name_len, "sec-fetch-site")) {
    if (out->fetch_site_count++ == 0) {
      out->fetch_site = value;
      out->fetch_site_len = value_len;
    }
  } else if (name_is(name, name_len, "access-control-request-method")) {
    if (!out->cors_method) {
      out->cors_method = value;
      out->cors_method_len = value_len;
    }
  } else if (name_is(name, name_len, "access-control-request-private-network")) {
    out->cors_private_network = name_is(value, value_len, "true");
  } else if (name_is(name, name_len, "cache-control")) {
    seen->cache_control = true;
    read_cache_control(value, value_len, &out->directives);
  } else if (name_is(name, name_len, "pragma")) {
    /* Pragma: no-cache (RFC 9111 5.4): only "no-cache" means anything. */
    seen->pragma_no_cache = seen->pragma_no_cache || list_has_token(value, value_len, "no-cache");
  } else if (name_is(name, name_len, "if-none-match")) {
    if (out->if_none_match_count++ == 0) {
      out->if_none_match = value;
      out->if_none_match_len = value_len;
    }
  }
  return true;
}

/* An absolute-form request-target, "http://" or "https://" (either case) authority [path-abempty
 * ["?" query]]: points *authority at the authority and *path at what follows it (empty when
 * nothing does). False when it is not of that form, or its authority is empty, starts with a
 * port, or has any byte a host and port do not (user info among them). */
static bool split_absolute_form(const char *target, size_t len, bool *https, const char **authority,
                                size_t *authority_len, const char **path) {
  size_t scheme = len > 7 && strncasecmp(target, "http://", 7) == 0    ? 7
                  : len > 8 && strncasecmp(target, "https://", 8) == 0 ? 8
                                                                       : 0;
  if (!scheme)
    return false;
  *https = scheme == 8;
  *authority = target + scheme;
  size_t end = scheme;
  /* Only what a host name, an IPv4 or a bracketed IPv6 literal and a port are made of: no user
   * info ('@', RFC 9110 4.2.4), no fragment, no percent-encoding or sub-delims, which no name
   * this daemon answers to has (host_names are letters, digits, '-' and '.'). */
  while (end < len && target[end] != '/' && target[end] != '?') {
    char c = target[end];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '[' || c == ']'))
      return false;
    end++;
  }
  *authority_len = end - scheme;
  *path = target + end;
  return *authority_len > 0 && (*authority)[0] != ':';
}

#define REFUSE(code)                                                                              \
  do {                                                                                            \
    *status = (code);                                                                             \
    return HTTP1_REFUSED;                                                                         \
  } while (0)

/* The request line at *at (method, target, version), *at moved past its CRLF. HTTP1_COMPLETE
 * when it is sound, else HTTP1_REFUSED with *status. */
static enum http1_result parse_request_line(char *buf, const unsigned char **at,
                                            const unsigned char *limit, struct http1_request *out,
                                            int *status) {
  const unsigned char *p = *at;
  const unsigned char *method = p;
  while (p < limit && is_tchar(*p))
    p++;
  if (p == method || p >= limit || *p != ' ')
    REFUSE(400);
  out->method = method_of((const char *)method, (size_t)(p - method));
  p++;

  const unsigned char *target = p;
  while (p < limit && *p > 0x20 && *p < 0x7f)
    p++;
  if (p == target || p >= limit || *p != ' ') /* HTTP/0.9 has no version: a CR comes here */
    REFUSE(400);
  out->raw_target = buf + (target - (const unsigned char *)buf);
  out->raw_target_len = (size_t)(p - target);
  p++;

  if (limit - p < 10 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
      p[7] < '0' || p[7] > '9' || p[8] != '\r' || p[9] != '\n')
    REFUSE(400);
  /* HTTP/1.0 and 1.1 only. RFC 9110 2.5 would let 1.2 speak 1.1, but llhttp, Node.js's parser,
   * refuses it: a head one parser on the path refuses, flipcached refuses (test_http1_llhttp). */
  if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
    REFUSE(505);
  out->version_minor = p[7] == '0' ? 0 : 1;
  *at = p + 10;
  return HTTP1_COMPLETE;
}

/* The fields from p to the empty line that ends the head at limit, each read into out and seen.
 * HTTP1_COMPLETE when all are sound, else HTTP1_REFUSED with *status. */
static enum http1_result parse_fields(const unsigned char *p, const unsigned char *limit,
                                      struct fields_seen *seen, struct http1_request *out,
                                      int *status) {
  size_t fields = 0;
  for (;;) {
    if (p + 2 == limit && p[0] == '\r' && p[1] == '\n')
      return HTTP1_COMPLETE;
    const unsigned char *name = p;
    while (p < limit && is_tchar(*p))
      p++;
    /* No name, whitespace before the colon, obs-fold, a bare LF: all refused. */
    if (p == name || p >= limit || *p != ':')
      REFUSE(400);
    size_t name_len = (size_t)(p - name);
    p++;
    while (p < limit && (*p == ' ' || *p == '\t'))
      p++;
    const unsigned char *value = p;
    while (p < limit && is_field_value_byte(*p))
      p++;
    if (limit - p < 2 || p[0] != '\r' || p[1] != '\n') /* a NUL, a lone CR, a bare LF */
      REFUSE(400);
    const unsigned char *value_end = p;
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
      value_end--;
    p += 2;
    if (++fields > HTTP1_MAX_FIELDS)
      REFUSE(431);
    if (!read_field((const char *)name, name_len, (const char *)value,
                    (size_t)(value_end - value), seen, out))
      REFUSE(400);
  }
}

/* Parses the head buf[start..end), which ends with its first empty line. */
static enum http1_result parse_head(char *buf, size_t start, size_t end, struct http1_request *out,
                                    int *status) {
  const unsigned char *p = (const unsigned char *)buf + start;
  const unsigned char *limit = (const unsigned char *)buf + end;
  if (parse_request_line(buf, &p, limit, out, status) != HTTP1_COMPLETE)
    return HTTP1_REFUSED;
  struct fields_seen seen = {0};
  if (parse_fields(p, limit, &seen, out, status) != HTTP1_COMPLETE)
    return HTTP1_REFUSED;
  /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0. */
  if (seen.hosts > 1 || (out->version_minor == 1 && seen.hosts == 0))
    REFUSE(400);
  if (seen.pragma_no_cache && !seen.cache_control)
    out->directives.no_cache = true;
  out->keep_alive = out->version_minor == 1 ? !seen.connection_close
                                            : seen.connection_keep_alive && !seen.connection_close;
  buf[out->raw_target - buf + out->raw_target_len] = '\0'; /* the space after it */
  out->target = out->raw_target;
  out->target_len = out->raw_target_len;
  if (out->raw_target[0] != '/' && out->raw_target[0] != '*' &&
      !(out->method == HTTP1_CONNECT)) {
    const char *path;
    if (!split_absolute_form(out->raw_target, out->raw_target_len, &out->https, &out->host,
                             &out->host_len, &path))
      REFUSE(400);
    out->absolute_form = true;
    /* No path: the origin-form "/" (RFC 9112 3.2.1), whose query no route reads. */
    out->target = *path == '/' ? path : "/";
    out->target_len = *path == '/' ? strlen(path) : 1;
  }
  out->head_len = end;
  return HTTP1_COMPLETE;
}

/* A head that does not end within HTTP1_MAX_HEAD: 414 when even the request line does not,
 * else 431. Decided on the first HTTP1_MAX_HEAD bytes only, so that the answer does not depend
 * on how much more was read. */
static enum http1_result refuse_too_large(const char *buf, size_t start, size_t len, int *status) {
  size_t seen = len < HTTP1_MAX_HEAD ? len : HTTP1_MAX_HEAD;
  *status = start < seen && memchr(buf + start, '\n', seen - start) ? 431 : 414;
  return HTTP1_REFUSED;
}

enum http1_result http1_parse(char *buf, size_t len, size_t *scanned, struct http1_request *out,
                              int *status) {
  memset(out, 0, sizeof(*out));
  out->directives.max_age = out->directives.min_fresh = out->directives.max_stale = -1;
  /* RFC 9112 2.2: empty lines before a request line are ignored. */
  size_t start = 0;
  while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n')
    start += 2;
  size_t at = *scanned > start ? *scanned : start;
  while (at < len) {
    const char *newline = memchr(buf + at, '\n', len - at);
    if (!newline) {
      at = len;
      break;
    }
    size_t lf = (size_t)(newline - buf);
    /* The head ends at the first empty line: LF then CRLF, or LF LF (refused when parsed). */
    size_t end = 0;
    if (lf + 1 < len && buf[lf + 1] == '\n')
      end = lf + 2;
    else if (lf + 2 < len && buf[lf + 1] == '\r' && buf[lf + 2] == '\n')
      end = lf + 3;
    if (end)
      return end > HTTP1_MAX_HEAD ? refuse_too_large(buf, start, len, status)
                                  : parse_head(buf, start, end, out, status);
    if (lf + 1 >= len || (lf + 2 >= len && buf[lf + 1] == '\r')) {
      at = lf; /* the rest of the empty line may come with the next read */
      break;
    }
    at = lf + 1;
  }
  *scanned = at;
  if (len >= HTTP1_MAX_HEAD)
    return refuse_too_large(buf, start, len, status);
  return HTTP1_INCOMPLETE;
}
