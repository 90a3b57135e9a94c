/* libFuzzer: the cache record decoder refuses anything inconsistent, and what it accepts encodes
 * back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct cache_record record;
  if (record_decode(data, size, &record) != RECORD_OK)
    return 0;
  if (record_encoded_len(&record) != size || record.fresh_until < record.fetched_at ||
      record.stale_until < record.fresh_until)
    abort();
  unsigned char *again = malloc(size);
  if (!again)
    return 0;
  record_encode(&record, again);
  if (memcmp(again, data, size) != 0)
    abort();
  free(again);
  return 0;
}
