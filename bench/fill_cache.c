/* bench/fill_cache: writes N enrollments into a flipcached cache directory through the daemon's
 * own cache module (the same records, keys and format file), for the restart and memory
 * scenarios of bench/run and bench/storage. Not installed. Exits 1 unless all COUNT entries
 * were stored (a map too small for them stops the fill when it is full).
 *
 *   flipcached-bench-fill DIR MAX_SIZE COUNT TTL < body.json
 *
 * body.json is one enrollment whose "id" is ID_TEMPLATE; entry i gets the id FILL_ID_FORMAT(i),
 * the same ids bench/restart_ids.lua asks for and bench/run fills nginx with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "config.h"
#include "record.h"
#include "stats.h"

#define ID_TEMPLATE "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define FILL_ID_FORMAT "b0000000-0000-4000-8000-%012u" /* decimal: curl can glob it */

int main(int argc, char **argv) {
  uint64_t max_size = 0;
  if (argc != 5 || !config_parse_size(argv[2], &max_size)) {
    fprintf(stderr, "usage: %s DIR MAX_SIZE COUNT TTL < body.json\n", argv[0]);
    return 2;
  }
  unsigned long count = strtoul(argv[3], NULL, 10);
  long ttl = strtol(argv[4], NULL, 10);
  static char body[65536];
  size_t body_len = fread(body, 1, sizeof(body) - 1, stdin);
  body[body_len] = '\0';
  char *id_at = strstr(body, ID_TEMPLATE);
  if (!id_at) {
    fprintf(stderr, "%s: the body has no id %s\n", argv[0], ID_TEMPLATE);
    return 1;
  }
  struct stats stats = {0};
  char err[512];
  struct cache *cache = cache_open(argv[1], max_size, &stats, err, sizeof(err));
  if (!cache || cache_unavailable(cache)) {
    fprintf(stderr, "%s: %s\n", argv[0], err);
    return 1;
  }
  long long now = (long long)time(NULL);
  for (unsigned long i = 0; i < count; i++) {
    char id[40];
    snprintf(id, sizeof(id), FILL_ID_FORMAT, (unsigned)i);
    memcpy(id_at, id, strlen(ID_TEMPLATE)); /* same length: the body keeps its size */
    struct cache_record record = {.upstream_status = 200, .fetched_at = now,
                                  .fresh_until = now + ttl, .stale_until = now + ttl + 60,
                                  .body = (const unsigned char *)body, .body_len = (uint32_t)body_len};
    enum cache_put_result stored = cache_put(cache, id, &record, err, sizeof(err));
    if (stored == CACHE_SKIPPED_FULL) { /* nothing runs the reclaimer here: the map is full */
      fprintf(stderr, "%s: the map is full after %lu entries\n", argv[0], i);
      break;
    }
    if (stored != CACHE_STORED) {
      fprintf(stderr, "%s: entry %lu: %s\n", argv[0], i, err);
      cache_close(cache);
      return 1;
    }
  }
  uint64_t entries = 0, bytes = 0;
  cache_usage(cache, &entries, &bytes);
  cache_close(cache);
  printf("%llu entries, %llu bytes\n", (unsigned long long)entries, (unsigned long long)bytes);
  return entries == count ? 0 : 1;
}
