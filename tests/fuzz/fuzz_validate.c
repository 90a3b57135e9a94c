/* libFuzzer: the upstream body and token validators never crash and never accept what they must
 * not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char ID[] = "497f6eca-6276-4993-bfeb-53cbbbba6f08";
  if (validate_enrollment_body((const char *)data, size, ID) == BODY_OK &&
      !memmem(data, size, "497", 3) && !memmem(data, size, "\\u", 2))
    abort(); /* accepted without the id in it (unless written with escapes) */
  char token[128];
  long expires_in = 0;
  if (!validate_token_response((const char *)data, size, token, sizeof(token), &expires_in)) {
    if (token[0] == '\0' || expires_in <= 0)
      abort();
    for (const char *p = token; *p; p++) {
      if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
        abort();
    }
  }
  return 0;
}
