#include "quota.h"

#include <stdlib.h>
#include <time.h>

#define MILLI 1000 /* tokens are counted in thousandths, so that one millisecond refills rate */

struct bucket {
  bool used;
  uint64_t key;
  int64_t tokens_milli; /* as of updated_ms */
  int64_t updated_ms;
};

struct quota {
  struct bucket slots[QUOTA_USERS]; /* open addressing, linear probing; a slot is never emptied */
  struct bucket overflow;           /* shared once every slot holds a user paying back a burst;
                                       unused (full) until first needed */
};

struct quota *quota_new(void) { return calloc(1, sizeof(struct quota)); }

void quota_free(struct quota *quota) { free(quota); }


/* The bucket's tokens now; a bucket never seen, or idle long enough, holds the whole burst. */
static int64_t tokens_now(const struct bucket *bucket, unsigned rate, int64_t now_ms) {
  int64_t burst = (int64_t)rate * MILLI;
  if (!bucket->used)
    return burst;
  int64_t elapsed = now_ms > bucket->updated_ms ? now_ms - bucket->updated_ms : 0;
  int64_t tokens = bucket->tokens_milli + elapsed * (int64_t)rate;
  return tokens < burst ? tokens : burst;
}

static size_t slot_of(uint64_t key) {
  uint64_t h = key * UINT64_C(0x9E3779B97F4A7C15); /* Fibonacci hashing */
  return (size_t)(h >> 54) & (QUOTA_USERS - 1);
}

/* key's bucket, or a slot for it (unused, or full again and so free to take), or the overflow. */
static struct bucket *find_bucket(struct quota *quota, uint64_t key, unsigned rate,
                                  int64_t now_ms) {
  struct bucket *reusable = NULL;
  size_t at = slot_of(key);
  for (size_t probe = 0; probe < QUOTA_USERS; probe++, at = (at + 1) & (QUOTA_USERS - 1)) {
    struct bucket *bucket = &quota->slots[at];
    if (bucket->used && bucket->key == key)
      return bucket;
    if (!reusable && (!bucket->used || tokens_now(bucket, rate, now_ms) == (int64_t)rate * MILLI))
      reusable = bucket;
    if (!bucket->used)
      break; /* the end of key's probe sequence: it has no bucket */
  }
  if (!reusable)
    return &quota->overflow;
  *reusable = (struct bucket){.used = true, .key = key, .tokens_milli = (int64_t)rate * MILLI,
                              .updated_ms = now_ms};
  return reusable;
}

bool quota_take(struct quota *quota, uint64_t key, unsigned rate, int64_t now_ms,
                long *retry_after_seconds) {
  if (rate == 0)
    return true;
  struct bucket *bucket = find_bucket(quota, key, rate, now_ms);
  int64_t tokens = tokens_now(bucket, rate, now_ms);
  bucket->used = true; /* the overflow's first use */
  bucket->updated_ms = now_ms;
  if (tokens >= MILLI) {
    bucket->tokens_milli = tokens - MILLI;
    return true;
  }
  bucket->tokens_milli = tokens;
  int64_t wait_ms = (MILLI - tokens + rate - 1) / rate;
  *retry_after_seconds = (long)((wait_ms + 999) / 1000);
  if (*retry_after_seconds < 1)
    *retry_after_seconds = 1;
  return false;
}
