/* http1: a strict parser of HTTP/1.x request heads, for a server that takes no request bodies.
 *
 * Pure: no I/O, no allocation. It accepts only what RFC 9112 defines (CRLF line endings, a token
 * method, a visible-ASCII target, HTTP/1.0 or HTTP/1.1, "name: value" fields with no whitespace
 * before the colon, no obs-fold, no NUL or other control byte in a value; never looser than
 * llhttp's strict mode, which tests/unit/test_http1_llhttp.c and a fuzzer check) and refuses the rest
 * with the status to answer, so that no two parsers on the path can read one stream two ways.
 * Anything that announces a body (Transfer-Encoding, a Content-Length other than 0, a second
 * Content-Length) is reported in `carries_body`: the caller answers it and closes, because the
 * stream's framing can no longer be trusted. */
#ifndef FLIPCACHED_HTTP1_H
#define FLIPCACHED_HTTP1_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP1_MAX_HEAD 16384   /* request line and fields together */
#define HTTP1_MAX_FIELDS 100

enum http1_method {
  HTTP1_GET,
  HTTP1_HEAD,
  HTTP1_POST,
  HTTP1_PUT,
  HTTP1_DELETE,
  HTTP1_OPTIONS,
  HTTP1_TRACE,
  HTTP1_CONNECT,
  HTTP1_PATCH,
  HTTP1_UNKNOWN, /* a well-formed token no route knows: 501 */
};

/* The client's Cache-Control request directives (RFC 9111 5.2.1), every Cache-Control field
 * read; the others are ignored, and so is a directive with a malformed argument. Seconds are
 * delta-seconds, bare or quoted, capped at HTTP1_DELTA_MAX; a directive given twice keeps its
 * strictest value (the smallest max-age, max-stale; the largest min-fresh). */
#define HTTP1_DELTA_MAX 2147483647L /* RFC 9111 1.2.2: the largest to keep */
struct request_directives {
  long max_age;        /* -1: none */
  long min_fresh;      /* -1: none */
  long max_stale;      /* -1: none; a bare max-stale is HTTP1_DELTA_MAX (any staleness) */
  bool no_cache;       /* also Pragma: no-cache with no Cache-Control field (RFC 9111 5.4) */
  bool no_store;
  bool only_if_cached;
};

struct http1_request {
  enum http1_method method;
  /* The origin-form target: the request-target itself, or the path and query of an absolute-form
   * one ("/" when it has no path, its query dropped); NUL-terminated (in the parsed buffer, or a
   * constant). */
  const char *target;
  size_t target_len;
  /* The request-target as the request line has it (in the buffer, not NUL-terminated). */
  const char *raw_target;
  size_t raw_target_len;
  /* An absolute-form target (RFC 9112 3.2.2): its authority then stands for Host (host and
   * host_len point at it, and the Host field is ignored, as the RFC says), and https says that
   * it named the https scheme, which this plain-HTTP server never serves (421). */
  bool absolute_form;
  bool https;
  int version_minor;   /* 0 or 1 */
  bool keep_alive;     /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive */
  bool carries_body;
  size_t head_len;     /* bytes of the buffer this request took, blank lines before it included */
  /* The fields the front end's Host and Origin rules read (access.h), pointing into the parsed
   * buffer, not NUL-terminated, trailing whitespace trimmed; NULL when absent. A request may carry
   * more than one Origin or Sec-Fetch-Site: the counts say so, and the value is the first. */
  const char *host;
  size_t host_len;
  const char *origin;
  size_t origin_len;
  unsigned origin_count;
  const char *fetch_site; /* Sec-Fetch-Site */
  size_t fetch_site_len;
  unsigned fetch_site_count;
  /* A CORS preflight's Access-Control-Request-Method (the first; NULL when absent), and whether
   * Access-Control-Request-Private-Network: true came with it (Chrome's Private Network Access,
   * sent when a public page asks a loopback address). */
  const char *cors_method;
  size_t cors_method_len;
  bool cors_private_network;
  struct request_directives directives;
  /* If-None-Match (in the buffer, not NUL-terminated; NULL when absent), and how many such
   * fields came: with more than one the condition is not evaluated (the answer is a 200, which
   * is always correct for a conditional GET). */
  const char *if_none_match;
  size_t if_none_match_len;
  unsigned if_none_match_count;
};

enum http1_result {
  HTTP1_INCOMPLETE, /* no end of head yet: read more (buffer below HTTP1_MAX_HEAD) */
  HTTP1_COMPLETE,
  HTTP1_REFUSED,    /* answer *status (400, 414, 431, 505) and close: a malformed head, or an
                       absolute-form target with user info, another scheme or no host */
};

/* Looks for the end of a request head in buf[0..len). *scanned carries the offset already
 * searched between calls on the same growing buffer (start it at 0), so that a head trickled in
 * byte by byte costs linear time. On HTTP1_COMPLETE, parses it into out; the target's terminating
 * byte (the space after it) is overwritten with a NUL. */
enum http1_result http1_parse(char *buf, size_t len, size_t *scanned, struct http1_request *out,
                              int *status);

/* "GET", "HEAD", ...; "-" for HTTP1_UNKNOWN. */
const char *http1_method_name(enum http1_method method);

#endif
