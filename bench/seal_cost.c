/* The seal's cost per operation of the shared tier (seal.h), on the loop's CPU: what a write-back
 * adds (one record sealed, two names: the entry's and the lock's), what a copy taken from Redis
 * adds (the names under each key, one open), and a message (one seal, one open). A record of an
 * enrollment the size of the reference page's (1.6 KB of body). Printed in microseconds, the
 * median of 9 rounds of 20,000; bench/fleet compares it with a miss answered from Redis.
 *
 *   build-release/flipcached-bench-seal            # bench/fleet runs it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "seal.h"

#define ROUNDS 9
#define PER_ROUND 20000

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static volatile unsigned char sink;

int main(void) {
  static const char KEYS[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
                             "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n";
  static const char ID[] = "497f6eca-6276-4993-bfeb-53cbbbba6f08";
  struct seal_keys keys;
  char err[200];
  if (seal_keys_parse(KEYS, sizeof(KEYS) - 1, &keys, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  char body[1700];
  memset(body, 'a', sizeof(body));
  struct cache_record record = {.upstream_status = 200, .fetched_at = 1, .fresh_until = 2,
                                .stale_until = 3, .body = (const unsigned char *)body,
                                .body_len = 1600};
  size_t plain_len = record_encoded_len(&record);
  unsigned char *plain = malloc(plain_len), *sealed = malloc(plain_len + 64),
                *opened = malloc(plain_len + 64);
  if (!plain || !sealed || !opened)
    return 1;
  record_encode(&record, plain);
  const char context[] = "flipcached entry record-v1 prefix=flipcached: id=497f6eca-6276-4993-"
                         "bfeb-53cbbbba6f08";
  unsigned char clear[16] = {0};
  size_t sealed_len = seal_sealed_len(sizeof(clear), plain_len);
  const char *labels[] = {"write-back: seal a record, name entry and lock",
                          "copy taken: name under 2 keys, open a record",
                          "message: seal and open \"ready HOST ID\""};
  double median[3];
  for (int op = 0; op < 3; op++) {
    double per_op[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
      double start = now_us();
      for (int i = 0; i < PER_ROUND; i++) {
        char name[SEAL_NAME_HEX + 1];
        size_t out_len = 0;
        bool ok = true;
        if (op == 0) {
          seal_name(&keys, 0, ID, name);
          seal_name(&keys, 0, ID, name);
          ok = seal_value(&keys, context, clear, sizeof(clear), plain, plain_len, sealed);
        } else if (op == 1) {
          seal_name(&keys, 0, ID, name);
          seal_name(&keys, 1, ID, name);
          ok = seal_open(&keys, context, sealed, sealed_len, sizeof(clear), opened, &out_len);
        } else {
          static const char message[] = "ready 0123456789abcdef 497f6eca-6276-4993-bfeb-53cbbbba6f08";
          unsigned char box[128];
          ok = seal_value(&keys, "flipcached message v1 prefix=flipcached:", NULL, 0, message,
                          sizeof(message) - 1, box) &&
               seal_open(&keys, "flipcached message v1 prefix=flipcached:", box,
                         seal_sealed_len(0, sizeof(message) - 1), 0, opened, &out_len);
        }
        if (!ok) {
          fprintf(stderr, "seal failed\n");
          return 1;
        }
        sink ^= (unsigned char)name[0];
      }
      per_op[round] = (now_us() - start) / PER_ROUND;
    }
    qsort(per_op, ROUNDS, sizeof(per_op[0]), compare);
    median[op] = per_op[ROUNDS / 2];
    printf("  %-52s %7.2f us\n", labels[op], median[op]);
  }
  seal_keys_wipe(&keys);
  free(plain);
  free(sealed);
  free(opened);
  return 0;
}
