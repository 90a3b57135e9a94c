/* store: a fetched answer into the cache (store.h). */
#include "store.h"

#include "cache.h"
#include "flipcached.h"
#include "log.h"
#include "record.h"
#include "validators.h"

bool store_put(struct flipcached *daemon, const char *enrollment_id,
               const struct cache_record *record) {
  char err[256];
  switch (cache_put(daemon->cache, enrollment_id, record, err, sizeof(err))) {
  case CACHE_STORED:
    daemon->stats.cache_writes++;
    return true;
  case CACHE_SKIPPED_FULL: /* counted by the cache */
    log_warning_limited("cache: %s not stored: %s (served without storing)", enrollment_id, err);
    return false;
  case CACHE_PUT_FAILED:
    break;
  }
  daemon->stats.cache_write_errors++;
  log_warning_limited("cache: could not store %s: %s (served without storing)", enrollment_id, err);
  return false;
}

/* A record's times, fetched (or renewed) at now with that status: fresh for ttl (negative_ttl
 * for a 404) less sooner_by, then for a 200 the longer of the stale windows. */
static void set_times(const struct config *cfg, uint16_t upstream_status, long long now,
                      unsigned sooner_by, struct cache_record *record) {
  unsigned fresh_for = upstream_status == 200 ? cfg->ttl : cfg->negative_ttl;
  fresh_for = sooner_by < fresh_for ? fresh_for - sooner_by : 0;
  unsigned grace = 0;
  if (upstream_status == 200)
    grace = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                              : cfg->stale_if_error;
  record->fetched_at = now;
  record->fresh_until = now + fresh_for;
  record->stale_until = now + fresh_for + grace;
}

bool store_record_of(const struct config *cfg, uint16_t upstream_status, const char *body,
                     size_t body_len, long long now, unsigned sooner_by,
                     struct cache_record *record) {
  if (upstream_status == 404 && cfg->negative_ttl == 0)
    return false;
  *record = (struct cache_record){
    .upstream_status = upstream_status,
    .body = (const unsigned char *)body,
    .body_len = (uint32_t)body_len,
  };
  set_times(cfg, upstream_status, now, sooner_by, record);
  body_digest(body, body_len, record->body_digest);
  return true;
}

void store_record_renewed(const struct config *cfg, const struct cache_record *held, long long now,
                          struct cache_record *record) {
  *record = *held;
  set_times(cfg, 200, now, 0, record);
}

bool store_fetched(struct flipcached *daemon, const char *enrollment_id, uint16_t upstream_status,
                   const char *body, size_t body_len, long long now, unsigned sooner_by) {
  struct cache_record record;
  return store_record_of(&daemon->cfg, upstream_status, body, body_len, now, sooner_by, &record) &&
         store_put(daemon, enrollment_id, &record);
}
