/* answer_choice: a request's directives against the cached copy (answer_choice.h). */
#include "answer_choice.h"

/* The directives other than only-if-cached and max-stale accept the copy: freshness aside. */
static bool directives_accept(const struct request_directives *d, const struct cache_record *copy,
                              int64_t now) {
  if (d->no_cache || d->max_age == 0)
    return false;
  if (d->max_age > 0 && record_age(copy, now) > d->max_age)
    return false;
  return d->min_fresh < 0 || record_ttl_left(copy, now) >= d->min_fresh;
}

/* A stale copy within the request's max-stale, and still kept by the cache. */
static bool within_max_stale(const struct request_directives *d, const struct cache_record *copy,
                             int64_t now) {
  return d->max_stale >= 0 && now < copy->stale_until && now - copy->fresh_until <= d->max_stale;
}

struct answer_choice answer_choose(const struct request_directives *d,
                                   const struct cache_record *copy, int64_t now,
                                   struct stale_windows windows) {
  struct answer_choice choice = {.way = ANSWER_FETCH, .fwd = FWD_URI_MISS, .store = !d->no_store};
  if (d->max_age >= 0)
    choice.min_fetched_at = now - d->max_age;
  else if (d->no_cache || d->min_fresh >= 0)
    choice.min_fetched_at = now;
  if (!copy) {
    if (d->only_if_cached)
      choice.way = ANSWER_NOT_CACHED;
    return choice;
  }
  bool fresh = now < copy->fresh_until;
  choice.fwd = fresh ? FWD_REQUEST : FWD_STALE;
  if (!directives_accept(d, copy, now)) {
    if (d->only_if_cached) /* no stored answer consistent with the request (RFC 9111 5.2.1.7) */
      choice.way = ANSWER_NOT_CACHED;
    return choice;
  }
  if (fresh) {
    choice.way = ANSWER_FRESH;
    return choice;
  }
  enum record_freshness window = record_freshness(copy, now, windows.stale_while_revalidate,
                                                  windows.stale_if_error);
  if (d->only_if_cached) {
    bool usable = within_max_stale(d, copy, now) || window == FRESHNESS_STALE_WHILE_REVALIDATE ||
                  window == FRESHNESS_STALE_IF_ERROR;
    choice.way = usable ? ANSWER_STALE : ANSWER_NOT_CACHED;
    return choice;
  }
  if (within_max_stale(d, copy, now) || window == FRESHNESS_STALE_WHILE_REVALIDATE)
    choice.way = ANSWER_STALE_REFRESH;
  return choice;
}

bool answer_copy_covers_failure(const struct request_directives *d,
                                const struct cache_record *copy, int64_t now,
                                struct stale_windows windows) {
  if (d->no_cache)
    return false;
  return now < copy->fresh_until || within_max_stale(d, copy, now) ||
         record_usable_stale(copy, now, windows.stale_while_revalidate, windows.stale_if_error);
}

const char *answer_fwd_text(enum answer_fwd fwd) {
  switch (fwd) {
  case FWD_URI_MISS:
    return "uri-miss";
  case FWD_STALE:
    return "stale";
  case FWD_REQUEST:
    return "request";
  case FWD_NONE:
    break;
  }
  return NULL;
}
