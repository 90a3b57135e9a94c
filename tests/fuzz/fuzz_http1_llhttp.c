/* libFuzzer: flipcached's request-head parser against llhttp (Node.js's parser, strict mode,
 * built from Debian's node-llhttp sources) as the oracle. Whatever the bytes, a head flipcached
 * would serve is one llhttp's strict mode also takes whole, with no body to follow, the same
 * method, target and version (llhttp_oracle.h): a head llhttp rejects, flipcached rejects. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "llhttp_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct llhttp_verdict verdict; /* 16 KiB of URL: not on the stack */
  bool accepted;
  const char *why = llhttp_disagreement((const char *)data, size, &accepted, &verdict);
  if (why) {
    fprintf(stderr, "differential: %s (llhttp: %s)\n", why,
            verdict.rejected ? verdict.reason : "took it");
    abort();
  }
  return 0;
}
