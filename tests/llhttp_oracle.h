/* llhttp_oracle: llhttp, the parser Node.js uses, built in strict mode from Debian's
 * node-llhttp sources (/usr/share/llhttp, never copied into this tree), as the oracle of
 * flipcached's request-head parser (http1.h). Used by tests/unit/test_http1_llhttp.c and
 * tests/fuzz/fuzz_http1_llhttp.c.
 *
 * The rule they check: every request head that llhttp's strict mode rejects, flipcached
 * rejects; and a head both accept is read alike (method, target, version, no body). */
#ifndef FLIPCACHED_LLHTTP_ORACLE_H
#define FLIPCACHED_LLHTTP_ORACLE_H

#include <stdbool.h>
#include <stddef.h>

#include "http1.h"

struct llhttp_verdict {
  bool head_complete;  /* llhttp read a whole head without an error */
  bool rejected;       /* llhttp stopped on an error before the head's end */
  const char *reason;  /* with rejected: llhttp's own words */
  bool body;           /* with head_complete: llhttp expects a body (chunked, or a length > 0) */
  char method[24];     /* with head_complete: llhttp_method_name */
  int major, minor;
  char url[HTTP1_MAX_HEAD + 1];
  size_t url_len;
};

/* Parses data[0..len) as one request with llhttp (strict), stopping at the end of its head. */
void llhttp_judge(const char *data, size_t len, struct llhttp_verdict *out);

/* flipcached's parse of data[0..len) against llhttp's. NULL when they agree by the rule above,
 * else what differs (a static text). *flipcached_accepted: flipcached took a head it would
 * serve (complete, nothing announcing a body, a method it knows: anything else it answers
 * 400 or 501 and closes). */
const char *llhttp_disagreement(const char *data, size_t len, bool *flipcached_accepted,
                                struct llhttp_verdict *verdict);

#endif
