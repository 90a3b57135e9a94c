/* libFuzzer: the cache record decoder refuses anything inconsistent; what it accepts in the
 * current format encodes back to the same bytes, and a format 1 record (still read) encodes to
 * a format 2 one that decodes to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_record(const struct cache_record *a, const struct cache_record *b) {
  unsigned char digest_a[BODY_DIGEST_LEN], digest_b[BODY_DIGEST_LEN];
  record_digest(a, digest_a);
  record_digest(b, digest_b);
  return a->upstream_status == b->upstream_status && a->flags == b->flags &&
         a->fetched_at == b->fetched_at && a->fresh_until == b->fresh_until &&
         a->stale_until == b->stale_until && a->body_len == b->body_len &&
         memcmp(a->body, b->body, a->body_len) == 0 &&
         memcmp(digest_a, digest_b, BODY_DIGEST_LEN) == 0 &&
         a->upstream_etag_len == b->upstream_etag_len &&
         a->last_modified_len == b->last_modified_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct cache_record record, again_record;
  if (record_decode(data, size, &record) != RECORD_OK)
    return 0;
  bool format_1 = data[0] == 1;
  if ((!format_1 && record_encoded_len(&record) != size) ||
      record.fresh_until < record.fetched_at || record.stale_until < record.fresh_until)
    abort();
  size_t len = record_encoded_len(&record);
  unsigned char *again = malloc(len);
  if (!again)
    return 0;
  record_encode(&record, again);
  if (!format_1 && memcmp(again, data, size) != 0)
    abort();
  if (record_decode(again, len, &again_record) != RECORD_OK || !same_record(&record, &again_record))
    abort();
  free(again);
  return 0;
}
