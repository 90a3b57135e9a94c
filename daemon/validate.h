/* validate: is an upstream 200 body an enrollment we may store and serve? Pure.
 *
 * A body is accepted only when it is one strict JSON object (UTF-8, nesting at most
 * VALIDATE_MAX_DEPTH, nothing but whitespace after it) whose "id" is a string equal to the
 * requested id (compared case-insensitively). The body is never rewritten: clients get the
 * upstream's bytes. */
#ifndef FLIPCACHED_VALIDATE_H
#define FLIPCACHED_VALIDATE_H

#include <stddef.h>

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

#endif
