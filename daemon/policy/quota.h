/* quota: [server] miss_rate_per_user, a token bucket per local user for the misses that start an
 * upstream fetch. Hits, and requests that join a fetch already in progress, never take a token.
 *
 * Each user's bucket holds up to `rate` tokens (the burst) and gains `rate` a second. Pure: the
 * caller passes the monotonic time in milliseconds, so the unit tests drive an injected clock.
 *
 * Bounded: QUOTA_USERS buckets in a fixed table. A bucket that has refilled to the full burst is
 * the same as no bucket, so its slot is reused; when every slot holds a user still paying back a
 * burst (more than QUOTA_USERS users missing at once), the rest share one overflow bucket. Unknown
 * peers (uid=?) share one bucket of their own. */
#ifndef FLIPCACHED_QUOTA_H
#define FLIPCACHED_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#define QUOTA_USERS 1024

struct quota;


struct quota *quota_new(void);
void quota_free(struct quota *quota);

/* Takes one token of key's bucket (peer_user_key: a uid, or PEER_UNKNOWN_KEY). rate: tokens a second and the
 * burst; 0 takes nothing and always succeeds. false: none left; *retry_after_seconds (>= 1) says
 * when the next one comes. */
bool quota_take(struct quota *quota, uint64_t key, unsigned rate, int64_t now_ms,
                long *retry_after_seconds);

#endif
