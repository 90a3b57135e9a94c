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
