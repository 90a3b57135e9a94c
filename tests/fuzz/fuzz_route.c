/* libFuzzer: routing and UUID canonicalising never crash, and what they accept holds up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *target = malloc(size + 1);
  if (!target)
    return 0;
  memcpy(target, data, size);
  target[size] = '\0';
  for (int method = ROUTE_METHOD_GET; method <= ROUTE_METHOD_OTHER; method++) {
    struct route_match match;
    enum route_kind kind = route_match(target, (enum route_method)method, &match);
    if (kind == ROUTE_ENROLLMENT || kind == ROUTE_CACHE_INSPECT || kind == ROUTE_CACHE_DELETE) {
      char again[UUID_TEXT_LEN + 1];
      /* an accepted id is canonical: lower case, and canonicalising it changes nothing */
      if (strlen(match.enrollment_id) != UUID_TEXT_LEN ||
          !uuid_canonicalize(match.enrollment_id, UUID_TEXT_LEN, again) ||
          strcmp(again, match.enrollment_id) != 0)
        abort();
      if (strchr(target, '%') && strcspn(target, "%") < strcspn(target, "?"))
        abort(); /* never a percent-encoded path on the enrollment route */
    }
  }
  char canonical[UUID_TEXT_LEN + 1];
  if (uuid_canonicalize((const char *)data, size, canonical)) {
    for (size_t i = 0; i < UUID_TEXT_LEN; i++) {
      if (canonical[i] >= 'A' && canonical[i] <= 'Z')
        abort();
    }
  }
  free(target);
  return 0;
}
