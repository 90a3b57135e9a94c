/* cache: the LMDB module against a real environment in a temporary directory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "files.h"
#include "stats.h"

static char dir[] = "/tmp/flipcache-unit.XXXXXX";
static struct stats stats;
static struct cache *cache;
static char err[512];

static void open_cache(uint64_t max_size) {
  cr_assert(mkdtemp(dir));
  char path[300];
  snprintf(path, sizeof(path), "%s/cache", dir);
  memset(&stats, 0, sizeof(stats));
  cache = cache_open(path, max_size, &stats, err, sizeof(err));
  cr_assert_not_null(cache, "%s", err);
}

static void close_cache(void) {
  cache_close(cache);
  char command[300];
  snprintf(command, sizeof(command), "rm -rf '%s'", dir);
  cr_assert_eq(system(command), 0);
}

static void id_of(unsigned n, char id[37]) { snprintf(id, 37, "%08x-0000-4000-8000-000000000000", n); }

/* Stores entry n (a 1 KiB body) fetched at fetched_at, fresh for fresh_for, then grace. */
static enum cache_put_result store_entry(unsigned n, int64_t fetched_at, int64_t fresh_for,
                                         int64_t grace) {
  char id[37], body[1100];
  id_of(n, id);
  int len = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"pad\":\"%0900d\"}", id, 0);
  struct cache_record record = {.upstream_status = 200, .fetched_at = fetched_at,
                                .fresh_until = fetched_at + fresh_for,
                                .stale_until = fetched_at + fresh_for + grace,
                                .body = (const unsigned char *)body, .body_len = (uint32_t)len};
  return cache_put(cache, id, &record, err, sizeof(err));
}

static void put(unsigned n, int64_t fetched_at, int64_t fresh_for, int64_t grace) {
  cr_assert_eq(store_entry(n, fetched_at, fresh_for, grace), CACHE_STORED, "put %u: %s", n, err);
}

static bool present(unsigned n) {
  char id[37];
  id_of(n, id);
  struct cache_entry entry;
  bool found = cache_get(cache, id, &entry) == CACHE_FOUND;
  cache_entry_release(&entry);
  return found;
}

static uint64_t entries(void) {
  uint64_t count, bytes;
  cache_usage(cache, &count, &bytes);
  return count;
}

Test(cache, get_copies_out_a_decoded_record) {
  open_cache(16u << 20);
  put(1, 1000, 300, 60);
  char id[37];
  id_of(1, id);
  struct cache_entry entry;
  cr_assert_eq(cache_get(cache, id, &entry), CACHE_FOUND);
  cr_expect_eq(entry.record.fetched_at, 1000);
  cr_expect_eq(entry.record.fresh_until, 1300);
  cr_expect_eq(entry.record.stale_until, 1360);
  cr_expect(memmem(entry.record.body, entry.record.body_len, id, strlen(id)) != NULL);
  cache_entry_release(&entry);
  id_of(2, id);
  cr_expect_eq(cache_get(cache, id, &entry), CACHE_ABSENT);
  close_cache();
}

Test(cache, directory_is_created_private_and_tightened) {
  cr_assert(mkdtemp(dir));
  char path[300];
  snprintf(path, sizeof(path), "%s/loose", dir);
  mkdir(path, 0755);
  cache = cache_open(path, 1u << 20, &stats, err, sizeof(err));
  cr_assert_not_null(cache, "%s", err);
  struct stat st;
  stat(path, &st);
  cr_expect_eq(st.st_mode & 0777, 0700);
  close_cache();
}

/* Adjacent expired entries are all deleted in one step: stepping after a delete must not skip. */
Test(cache, a_sweep_step_deletes_exactly_the_entries_past_stale_until) {
  open_cache(16u << 20);
  for (unsigned n = 0; n < 20; n++)
    put(n, 1000, 10, n % 3 == 0 ? 1000 : 0); /* every third keeps a long stale window */
  bool pass_done = false;
  long removed = cache_sweep_step(cache, 1100, 1000, &pass_done);
  cr_expect(pass_done);
  cr_expect_eq(removed, 13);
  cr_expect_eq(stats.expired_removed, 13);
  for (unsigned n = 0; n < 20; n++)
    cr_expect_eq(present(n), n % 3 == 0, "entry %u", n);
  close_cache();
}

Test(cache, sweep_steps_resume_where_the_last_stopped) {
  open_cache(16u << 20);
  for (unsigned n = 0; n < 10; n++)
    put(n, 1000, 10, 0);
  bool pass_done = false;
  cr_expect_eq(cache_sweep_step(cache, 1100, 4, &pass_done), 4);
  cr_expect_not(pass_done);
  cr_expect_eq(cache_sweep_step(cache, 1100, 4, &pass_done), 4);
  cr_expect_not(pass_done);
  cr_expect_eq(cache_sweep_step(cache, 1100, 4, &pass_done), 2);
  cr_expect(pass_done);
  cr_expect_eq(entries(), 0);
  close_cache();
}

/* A put that may find the map full: CACHE_STORED or CACHE_SKIPPED_FULL, never a failure. */
static enum cache_put_result try_put(unsigned n, int64_t fetched_at, int64_t fresh_for) {
  enum cache_put_result result = store_entry(n, fetched_at, fresh_for, 0);
  cr_assert_neq(result, CACHE_PUT_FAILED, "put %u: %s", n, err);
  return result;
}

/* What the loop does between requests: reclaimer steps until the low-water mark. */
static void reclaim_until_done(int64_t now) {
  bool done = false;
  for (int step = 0; !done; step++) {
    cr_assert_lt(step, 100000, "the reclaimer never reaches its low-water mark");
    cr_assert_geq(cache_reclaim_step(cache, now, CACHE_RECLAIM_BATCH, &done), 0);
  }
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

/* The map is filled six times over, the loop's reclaimer running whenever the cache asks for
 * room: once full, the cache never drops below 70% of its peak, keeps exactly the newest
 * entries, never skips a write and never starts an empty file. */
Test(cache, filling_a_small_map_many_times_over_keeps_it_full_of_the_newest) {
  open_cache(4u << 20);
  uint64_t peak = 0, lowest_after_full = UINT64_MAX;
  bool full = false;
  unsigned total = 0, skipped = 0;
  for (; total < 24000; total++) {
    skipped += try_put(total, 1000 + total, 100000) == CACHE_SKIPPED_FULL;
    if (cache_needs_room(cache)) {
      full = true;
      reclaim_until_done(1000 + total);
    }
    uint64_t now_entries = entries();
    if (now_entries > peak)
      peak = now_entries;
    if (full && now_entries < lowest_after_full)
      lowest_after_full = now_entries;
  }
  cr_assert(full, "4 MiB never filled with 24,000 entries of 1 KiB");
  cr_expect_geq(lowest_after_full * 100, peak * 70, "entries fell to %llu of a peak of %llu",
                (unsigned long long)lowest_after_full, (unsigned long long)peak);
  cr_expect_eq(skipped, 0, "room is made before the map is full");
  cr_expect_eq(stats.cache_full_skips, 0);
  uint64_t kept = entries();
  /* exactly the newest `kept` entries are present, every older one is gone */
  for (unsigned n = 0; n < total; n++)
    cr_expect_eq(present(n), n >= total - kept, "entry %u of %u (%llu kept)", n, total,
                 (unsigned long long)kept);
  cr_expect_eq(stats.evictions, total - kept);
  cr_expect_eq(stats.cache_rebuilds, 0, "the file was never recreated");
  close_cache();
}

/* Entries past every window go before the oldest fresh ones. */
Test(cache, the_reclaimer_takes_expired_entries_before_the_oldest) {
  open_cache(4u << 20);
  unsigned n = 0;
  /* every other entry expires at 2000; all are older than the fresh ones that follow */
  for (; n < 400; n++)
    try_put(n, 1000 + n, n % 2 ? 1000 : 100000);
  while (!cache_needs_room(cache))
    try_put(n, 1000 + n, 100000), n++;
  bool done = false;
  cr_assert_eq(cache_reclaim_step(cache, 5000, 64, &done), 64);
  cr_expect_eq(stats.expired_removed, 64);
  cr_expect_eq(stats.evictions, 0, "nothing fresh goes while something expired is left");
  for (unsigned i = 0; i < 128; i++)
    cr_expect_eq(present(i), i % 2 == 0, "entry %u", i);
  close_cache();
}

/* A write that meets a full map is skipped and counted; the entries stay; the reclaimer then
 * makes room and writes succeed again. */
Test(cache, a_full_map_skips_the_write_and_keeps_every_entry) {
  open_cache(4u << 20);
  unsigned n = 0;
  while (try_put(n, 1000 + n, 100000) == CACHE_STORED)
    n++;
  uint64_t before = entries();
  cr_expect_gt(before, 100);
  cr_expect_eq(stats.cache_full_skips, 1);
  cr_expect_eq(try_put(n, 1000 + n, 100000), CACHE_SKIPPED_FULL);
  cr_expect_eq(entries(), before, "nothing was removed to make the failed write fit");
  cr_expect(cache_needs_room(cache));
  reclaim_until_done(5000);
  cr_expect_geq(entries() * 100, before * 70, "%llu of %llu", (unsigned long long)entries(), (unsigned long long)before);
  cr_expect_eq(try_put(n, 1000 + n, 100000), CACHE_STORED);
  cr_expect(present(n));
  cr_expect(present(n - 1), "the newest stay");
  cr_expect_not(present(0), "the oldest went");
  close_cache();
}

/* A refreshed entry is stored anew: it becomes the newest, and its older copy is gone. */
Test(cache, a_rewritten_entry_counts_as_the_newest) {
  open_cache(16u << 20);
  for (unsigned n = 0; n < 10; n++)
    put(n, 1000 + n, 300, 0);
  put(0, 2000, 300, 0);
  cr_expect_eq(entries(), 10);
  bool done = false;
  cr_assert_eq(cache_reclaim_step(cache, 1100, 3, &done), 3);
  cr_expect(present(0), "rewritten last: not among the oldest");
  cr_expect_not(present(1));
  cr_expect_not(present(2));
  cr_expect_not(present(3));
  cr_expect(present(4));
  char id[37];
  id_of(0, id);
  struct cache_entry entry;
  cr_assert_eq(cache_get(cache, id, &entry), CACHE_FOUND);
  cr_expect_eq(entry.record.fetched_at, 2000);
  cache_entry_release(&entry);
  /* its old expiry key went with the old copy: a sweep at 1400 (past the old window only)
   * leaves it */
  bool pass_done = false;
  cache_sweep_step(cache, 1400, 100, &pass_done);
  cr_expect(present(0));
  close_cache();
}

Test(cache, deleting_one_entry_is_one_short_transaction_and_leaves_the_others) {
  open_cache(64u << 20);
  for (unsigned n = 0; n < 20000; n++)
    put(n, 1000, 300, 0);
  char id[37];
  id_of(777, id);
  bool found = false;
  cr_assert_eq(cache_delete(cache, id, &found, err, sizeof(err)), 0, "%s", err);
  cr_expect(found);
  cr_expect_not(present(777));
  cr_expect_eq(entries(), 19999);
  cr_expect(present(776));
  cr_expect(present(778));
  cr_assert_eq(cache_delete(cache, id, &found, err, sizeof(err)), 0);
  cr_expect_not(found);
  put(777, 1000, 300, 0);
  cr_expect(present(777), "the id can be stored again");
  char data[400];
  snprintf(data, sizeof(data), "%s/cache/data.mdb", dir);
  cr_expect(file_exists(data), "the file was not replaced");
  cr_expect_eq(stats.cache_rebuilds, 0);
  close_cache();
}

/* The purged file goes (the keeper deletes it) and a new empty one serves. */
Test(cache, purging_all_starts_an_empty_file_and_the_old_one_is_deleted) {
  open_cache(16u << 20);
  for (unsigned n = 0; n < 5; n++)
    put(n, 1000, 300, 0);
  uint64_t removed = 0;
  cr_assert_eq(cache_purge_all(cache, &removed, err, sizeof(err)), 0, "%s", err);
  cr_expect_eq(removed, 5);
  cr_expect_eq(entries(), 0);
  char id[37], data[400], command[500], out[512];
  id_of(3, id);
  snprintf(data, sizeof(data), "%s/cache/data.mdb", dir);
  cr_expect_not(file_contains(data, id));
  snprintf(command, sizeof(command), "grep -rl '%s' '%s/cache' 2>/dev/null", id, dir);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; i++) {
    FILE *grep = popen(command, "r");
    gone = grep && fgets(out, sizeof(out), grep) == NULL;
    if (grep)
      pclose(grep);
    if (!gone)
      usleep(100 * 1000);
  }
  cr_expect(gone, "no file in the cache directory holds a purged entry: %s", out);
  put(7, 1000, 300, 0);
  cr_expect(present(7));
  close_cache();
}

/* Three damaged files from earlier starts: the newest stays for a post-mortem, the keeper
 * deletes the others. */
Test(cache, only_the_newest_damaged_file_is_kept) {
  cr_assert(mkdtemp(dir));
  char path[300], file[400];
  snprintf(path, sizeof(path), "%s/cache", dir);
  mkdir(path, 0700);
  const char *times[] = {"1700000000", "1800000000", "1750000000"};
  for (int i = 0; i < 3; i++) {
    snprintf(file, sizeof(file), "%s/data.mdb.broken-%s", path, times[i]);
    FILE *out = fopen(file, "w");
    fputs("personal data", out);
    fclose(out);
  }
  cache = cache_open(path, 1u << 20, &stats, err, sizeof(err));
  cr_assert_not_null(cache);
  snprintf(file, sizeof(file), "%s/data.mdb.broken-1800000000", path);
  cr_expect_str_eq(cache_set_aside_file(cache), file);
  char older[400];
  snprintf(older, sizeof(older), "%s/data.mdb.broken-1700000000", path);
  for (int i = 0; i < 50 && file_exists(older); i++)
    usleep(100 * 1000);
  cr_expect_not(file_exists(older));
  snprintf(older, sizeof(older), "%s/data.mdb.broken-1750000000", path);
  cr_expect_not(file_exists(older));
  cr_expect(file_exists(file));
  unlink(file);
  cr_expect_null(cache_set_aside_file(cache), "an operator removed it");
  close_cache();
}

/* The sweeper walks the expiry order: a pass over 100,000 fresh entries ends at once, having
 * looked at one key, not at every entry. */
Test(cache, a_sweep_with_nothing_expired_ends_at_once_among_many_entries) {
  open_cache(256u << 20);
  for (unsigned n = 0; n < 100000; n++)
    put(n, 1000, 100000, 0);
  put(100000, 1000, 10, 0);
  bool pass_done = false;
  cr_expect_eq(cache_sweep_step(cache, 2000, 256, &pass_done), 1);
  cr_expect(pass_done, "one step is a whole pass: nothing else is past its window");
  cr_expect_eq(entries(), 100000);
  close_cache();
}

/* Commits only write (MDB_NOSYNC); the syncer thread flushes them about once a second, and
 * keeps doing so across a reopen of the environment (a full purge recreates it). */
Test(cache, the_syncer_flushes_commits_every_second) {
  open_cache(16u << 20);
  put(1, 1000, 300, 60);
  uint64_t before = cache_syncs(cache);
  for (int i = 0; i < 50 && cache_syncs(cache) == before; i++)
    usleep(100 * 1000);
  cr_expect_gt(cache_syncs(cache), before, "no sync within 5 s");
  uint64_t removed = 0;
  cr_assert_eq(cache_purge_all(cache, &removed, err, sizeof(err)), 0, "%s", err);
  put(2, 1000, 300, 60);
  before = cache_syncs(cache);
  for (int i = 0; i < 50 && cache_syncs(cache) == before; i++)
    usleep(100 * 1000);
  cr_expect_gt(cache_syncs(cache), before, "no sync after the environment was recreated");
  close_cache();
}

/* The hit path's lookup borrows the record from the map (no copy) until it is released; then
 * the cache is usable again as before. */
Test(cache, a_borrowed_record_is_the_stored_one_and_releasing_it_frees_the_reader) {
  open_cache(16u << 20);
  put(1, 1000, 300, 60);
  char id[37];
  id_of(1, id);
  struct cache_entry borrowed, copied;
  cr_assert_eq(cache_get_borrowed(cache, id, &borrowed), CACHE_FOUND);
  cr_expect_null(borrowed.copy, "nothing copied");
  cr_expect_eq(borrowed.record.fresh_until, 1300);
  cr_expect(memmem(borrowed.record.body, borrowed.record.body_len, id, strlen(id)) != NULL);
  size_t body_len = borrowed.record.body_len;
  cache_entry_release(&borrowed);
  for (int i = 0; i < 3; i++) { /* the reused read transaction was reset: it renews again */
    cr_assert_eq(cache_get(cache, id, &copied), CACHE_FOUND);
    cr_expect_eq(copied.record.body_len, body_len);
    cache_entry_release(&copied);
    cr_assert_eq(cache_get_borrowed(cache, id, &borrowed), CACHE_FOUND);
    cache_entry_release(&borrowed);
  }
  id_of(2, id);
  cr_expect_eq(cache_get_borrowed(cache, id, &borrowed), CACHE_ABSENT);
  cache_entry_release(&borrowed);
  put(3, 1000, 300, 60);
  cr_expect(present(3));
  close_cache();
}

/* --- GET /cache's pages ----------------------------------------------------------------------- */

struct listed {
  unsigned count;
  char last[37];
  bool in_order;
  unsigned char *seen; /* by entry number */
  unsigned duplicates;
};

static void note_listed(const char *enrollment_id, const struct cache_record *record,
                        size_t record_bytes, void *arg) {
  (void)record;
  (void)record_bytes;
  struct listed *listed = arg;
  listed->in_order = listed->in_order && strcmp(listed->last, enrollment_id) < 0;
  snprintf(listed->last, sizeof(listed->last), "%s", enrollment_id);
  unsigned n = (unsigned)strtoul(enrollment_id, NULL, 16);
  listed->duplicates += listed->seen[n]++;
  listed->count++;
}

Test(cache, pages_list_every_entry_once_in_id_order_at_production_size, .timeout = 300) {
  /* 100,000 entries stored in an order unlike their ids', paged through 1,000 at a time, each
   * page starting after the last id of the one before. */
  const unsigned n = 100000;
  open_cache(512u << 20);
  for (unsigned i = 0; i < n; i++)
    put((i * 7919u) % n, 1000, 300, 60);
  struct listed listed = {.in_order = true, .seen = calloc(n, 1)};
  unsigned pages = 0;
  bool more = true;
  while (more) {
    char after[37];
    snprintf(after, sizeof(after), "%s", listed.last);
    long got = cache_list(cache, after, 1000, note_listed, &listed, &more);
    cr_assert_geq(got, 0);
    cr_assert(got == 1000 || !more, "a short page (%ld) that says more follow", got);
    pages++;
    cr_assert_leq(pages, n / 1000 + 1);
  }
  cr_expect_eq(listed.count, n);
  cr_expect_eq(listed.duplicates, 0);
  cr_expect(listed.in_order, "ids in key order across pages");
  cr_expect_eq(pages, n / 1000);
  /* A page may start after an id that is gone: it goes on from the next one. */
  char gone[37], next[37];
  id_of(5000, gone);
  id_of(5001, next);
  bool found;
  cr_assert_eq(cache_delete(cache, gone, &found, err, sizeof(err)), 0);
  struct listed one = {.in_order = true, .seen = calloc(n, 1)};
  cache_list(cache, gone, 1, note_listed, &one, &more);
  cr_expect_str_eq(one.last, next);
  cr_expect(more);
  free(listed.seen);
  free(one.seen);
  close_cache();
}

/* The count the warm-up compares: every delete, found or not, and every purge. */
Test(cache, deletes_and_purges_are_counted_found_or_not) {
  open_cache(16u << 20);
  put(1, 1000, 300, 0);
  cr_expect_eq(cache_deletes(cache), 0);
  char id[37];
  bool found = false;
  id_of(1, id);
  cr_assert_eq(cache_delete(cache, id, &found, err, sizeof(err)), 0, "%s", err);
  cr_expect(found);
  id_of(2, id);
  cr_assert_eq(cache_delete(cache, id, &found, err, sizeof(err)), 0, "%s", err);
  cr_expect_not(found);
  cr_expect_eq(cache_deletes(cache), 2, "a delete of an id not held counts too");
  uint64_t removed;
  cr_assert_eq(cache_purge_all(cache, &removed, err, sizeof(err)), 0, "%s", err);
  cr_expect_eq(cache_deletes(cache), 3);
  close_cache();
}
