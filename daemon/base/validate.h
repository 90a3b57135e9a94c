/* validate: is an upstream 200 body an enrollment we may store and serve? Pure.
 *
 * A body is accepted only when it is one strict JSON object (UTF-8, nesting at most
 * VALIDATE_MAX_DEPTH, nothing but whitespace after it) whose "id" is a string equal to the
 * requested id (compared case-insensitively). The body is never rewritten: clients get the
 * upstream's bytes. */
#ifndef FLIPCACHED_VALIDATE_H
#define FLIPCACHED_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define VALIDATE_MAX_DEPTH 32

enum body_verdict {
  BODY_OK,
  BODY_NOT_JSON,    /* empty, malformed, too deep, invalid UTF-8 or trailing data */
  BODY_NOT_OBJECT,  /* valid JSON, but not an object */
  BODY_NO_ID,       /* no "id", or not a string */
  BODY_WRONG_ID,    /* an enrollment, but not the one asked for */
};

enum body_verdict validate_enrollment_body(const char *body, size_t len, const char *enrollment_id);
const char *body_verdict_text(enum body_verdict verdict);
/* Whether a 404's body is kept as the upstream sent it: one strict JSON value (the API's error
 * shape is an object). Anything else is replaced by the daemon's own body before it is stored,
 * so a stored 404 (here or in the shared tier) always passes this. */
bool validate_not_found_body(const char *body, size_t len);

/* The list endpoint (GET /v1/enrollments?program_id=P): {"enrollments": [E, ...]}, each E an
 * enrollment that would pass validate_enrollment_body for its own id, which must be a UUID.
 * Other members of the outer object are allowed and ignored; "enrollments" must appear once. */
#define VALIDATE_LIST_MAX_ELEMENTS 100000

/* One element of a list: the bytes body[offset, offset + len) and its id, canonical (lower case). */
struct list_element {
  uint32_t offset, len;
  char id[UUID_TEXT_LEN + 1];
};

/* A list checked step by step, so that a big one never holds the event loop: one element parsed
 * at a time, and what is held besides the body is one element's tree and the spans. The body
 * must stay unchanged until list_scan_end. */
struct list_scan {
  const char *body;
  size_t len, pos;
  int state;
  bool seen_list;
  struct json_tokener *tokener;
  struct list_element *elements; /* the spans so far; the caller may take them once LIST_DONE */
  size_t count, cap;
  const char *problem;           /* once LIST_REFUSED: what is wrong (a fixed text that never
                                    quotes the body) */
  long bad_index;                /* once LIST_REFUSED: the element at fault, or -1 */
};
enum list_progress { LIST_MORE, LIST_DONE, LIST_REFUSED };

/* 0, or -1 when out of memory (nothing to end then). */
int list_scan_begin(struct list_scan *scan, const char *body, size_t len);
/* Goes on for at most max_elements more elements. A refused list keeps no span. */
enum list_progress list_scan_step(struct list_scan *scan, size_t max_elements);
/* Frees what the scan holds (the spans too, unless taken: set elements to NULL). */
void list_scan_end(struct list_scan *scan);

/* The whole list at once (len < 4 GiB): NULL with *elements (malloc'd, to be freed; NULL for an
 * empty list) and *count set; or, the list refused whole, what is wrong with *bad_index. */
const char *validate_enrollment_list(const char *body, size_t len, struct list_element **elements,
                                     size_t *count, long *bad_index);

#define TOKEN_DEFAULT_EXPIRES_IN 3600L
#define TOKEN_MAX_EXPIRES_IN (365L * 86400L)

/* An OAuth2 token response (RFC 6749 5.1): a JSON object with "access_token" (one run of visible
 * ASCII, shorter than token_cap), "token_type" absent or "Bearer" (any case), and "expires_in"
 * a positive number of seconds (TOKEN_DEFAULT_EXPIRES_IN when absent, at most
 * TOKEN_MAX_EXPIRES_IN). Returns NULL and fills token and *expires_in, or returns what is wrong
 * (a fixed text that never quotes the body). */
const char *validate_token_response(const char *body, size_t len, char *token, size_t token_cap,
                                    long *expires_in);

#endif
