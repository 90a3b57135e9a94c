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

static void put(unsigned n, int64_t fetched_at, int64_t fresh_for, int64_t grace) {
  char id[37], body[1100];
  id_of(n, id);
  int len = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"pad\":\"%0900d\"}", id, 0);
  struct cache_record record = {.upstream_status = 200, .fetched_at = fetched_at,
                                .fresh_until = fetched_at + fresh_for,
                                .stale_until = fetched_at + fresh_for + grace,
                                .body = (const unsigned char *)body, .body_len = (uint32_t)len};
  cr_assert_eq(cache_put(cache, id, &record, fetched_at, err, sizeof(err)), 0, "put %u: %s", n, err);
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

Test(cache, a_full_map_evicts_expired_entries_first) {
  open_cache(256u << 10);
  /* Half the entries are past every window at "now" = 5000, half are fresh for long. */
  unsigned n = 0;
  for (; n < 400; n++)
    put(n, 1000 + n, n % 2 ? 100000 : 10, 0);
  cr_expect_gt(stats.evictions, 0, "a 256 KiB map cannot hold 400 entries of 1 KiB");
  /* every put succeeded (asserted in put), and the fresh recent entries survived */
  cr_expect(present(399));
  cr_expect(present(397));
  close_cache();
}

Test(cache, with_nothing_expired_the_oldest_are_evicted) {
  open_cache(256u << 10);
  for (unsigned n = 0; n < 400; n++)
    put(n, 1000 + n, 100000, 0);
  cr_expect_gt(stats.evictions, 0);
  cr_expect_not(present(0), "the oldest went first");
  cr_expect(present(399), "the newest stays");
  close_cache();
}

Test(cache, deleting_one_entry_removes_its_bytes_from_the_file) {
  open_cache(16u << 20);
  put(1, 1000, 300, 0);
  put(2, 1000, 300, 0);
  char id1[37], id2[37], data[400];
  id_of(1, id1);
  id_of(2, id2);
  snprintf(data, sizeof(data), "%s/cache/data.mdb", dir);
  cr_assert(file_contains(data, id1));
  bool found = false;
  cr_assert_eq(cache_delete(cache, id1, &found, err, sizeof(err)), 0, "%s", err);
  cr_expect(found);
  cr_expect_not(file_contains(data, id1), "compacted away");
  cr_expect(file_contains(data, id2));
  cr_expect(present(2), "the cache works after the swap");
  put(3, 1000, 300, 0);
  cr_expect(present(3));
  cr_assert_eq(cache_delete(cache, id1, &found, err, sizeof(err)), 0);
  cr_expect_not(found);
  close_cache();
}

Test(cache, purging_all_empties_the_file) {
  open_cache(16u << 20);
  for (unsigned n = 0; n < 5; n++)
    put(n, 1000, 300, 0);
  uint64_t removed = 0;
  cr_assert_eq(cache_purge_all(cache, &removed, err, sizeof(err)), 0, "%s", err);
  cr_expect_eq(removed, 5);
  cr_expect_eq(entries(), 0);
  char id[37], data[400];
  id_of(3, id);
  snprintf(data, sizeof(data), "%s/cache/data.mdb", dir);
  cr_expect_not(file_contains(data, id));
  put(7, 1000, 300, 0);
  cr_expect(present(7));
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
