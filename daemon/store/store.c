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

bool store_record_of(const struct config *cfg, uint16_t upstream_status, const char *body,
                     size_t body_len, long long now, unsigned sooner_by,
                     struct cache_record *record) {
  unsigned fresh_for = upstream_status == 200 ? cfg->ttl : cfg->negative_ttl;
  fresh_for = sooner_by < fresh_for ? fresh_for - sooner_by : 0;
  unsigned grace = 0;
  if (upstream_status == 200)
    grace = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                              : cfg->stale_if_error;
  if (upstream_status == 404 && cfg->negative_ttl == 0)
    return false;
  *record = (struct cache_record){
    .upstream_status = upstream_status,
    .fetched_at = now,
    .fresh_until = now + fresh_for,
    .stale_until = now + fresh_for + grace,
    .body = (const unsigned char *)body,
    .body_len = (uint32_t)body_len,
  };
  body_digest(body, body_len, record->body_digest);
  return true;
}

bool store_fetched(struct flipcached *daemon, const char *enrollment_id, uint16_t upstream_status,
                   const char *body, size_t body_len, long long now, unsigned sooner_by) {
  struct cache_record record;
  return store_record_of(&daemon->cfg, upstream_status, body, body_len, now, sooner_by, &record) &&
         store_put(daemon, enrollment_id, &record);
}
