/* libFuzzer: the upstream body, list and token validators never crash and never accept what they
 * must not; the list checked step by step agrees with the list checked at once. */
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
  struct list_element *elements;
  size_t count;
  long bad;
  const char *problem = validate_enrollment_list((const char *)data, size, &elements, &count, &bad);
  for (size_t i = 0; !problem && i < count; i++) {
    if ((size_t)elements[i].offset + elements[i].len > size ||
        validate_enrollment_body((const char *)data + elements[i].offset, elements[i].len,
                                 elements[i].id) != BODY_OK)
      abort(); /* a span that is not one whole enrollment of its own id */
  }
  struct list_scan scan;
  if (list_scan_begin(&scan, (const char *)data, size) == 0) {
    enum list_progress progress;
    while ((progress = list_scan_step(&scan, 1)) == LIST_MORE)
      ;
    if ((progress == LIST_DONE) != (problem == NULL) || (progress == LIST_DONE && scan.count != count))
      abort();
    list_scan_end(&scan);
  }
  free(elements);
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
