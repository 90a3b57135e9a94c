/* record: the cache value's encoding, round trips and refusals. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

static const char BODY[] = "{\"id\":\"497f6eca-6276-4993-bfeb-53cbbbba6f08\"}";

static struct cache_record sample(void) {
  struct cache_record record = {
    .upstream_status = 200,
    .fetched_at = 1764000000,
    .fresh_until = 1764000300,
    .stale_until = 1764086700,
    .body = (const unsigned char *)BODY,
    .body_len = sizeof(BODY) - 1,
  };
  return record;
}

static unsigned char *encode(const struct cache_record *record, size_t *len) {
  *len = record_encoded_len(record);
  unsigned char *buf = malloc(*len);
  record_encode(record, buf);
  return buf;
}

Test(record, round_trip_keeps_every_field_and_the_body) {
  struct cache_record in = sample(), out;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  cr_assert_eq(len, RECORD_HEADER_LEN + sizeof(BODY) - 1);
  cr_assert_eq(record_decode(buf, len, &out), RECORD_OK);
  cr_expect_eq(out.upstream_status, 200);
  cr_expect_eq(out.fetched_at, in.fetched_at);
  cr_expect_eq(out.fresh_until, in.fresh_until);
  cr_expect_eq(out.stale_until, in.stale_until);
  cr_expect_eq(out.body_len, in.body_len);
  cr_expect(memcmp(out.body, BODY, out.body_len) == 0);
  cr_expect_eq(out.body, buf + RECORD_HEADER_LEN, "the body is not copied again");
  free(buf);
}

Test(record, layout_is_little_endian_and_versioned) {
  struct cache_record in = sample();
  size_t len;
  unsigned char *buf = encode(&in, &len);
  cr_expect_eq(buf[0], RECORD_FORMAT_VERSION);
  cr_expect_eq(buf[1] | buf[2] | buf[3], 0);
  cr_expect_eq(buf[4], 200);
  cr_expect_eq(buf[32], sizeof(BODY) - 1);
  free(buf);
}

Test(record, empty_body_round_trips) {
  struct cache_record in = sample(), out;
  in.body = NULL;
  in.body_len = 0;
  in.upstream_status = 404;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  cr_assert_eq(record_decode(buf, len, &out), RECORD_OK);
  cr_expect_eq(out.upstream_status, 404);
  cr_expect_eq(out.body_len, 0);
  free(buf);
}

Test(record, every_truncation_is_refused) {
  struct cache_record in = sample(), out;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  for (size_t cut = 0; cut < len; cut++) {
    enum record_decode_result result = record_decode(buf, cut, &out);
    cr_expect(result == RECORD_TRUNCATED, "cut at %zu gave %d", cut, result);
  }
  free(buf);
}

Test(record, trailing_bytes_are_refused) {
  struct cache_record in = sample(), out;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  unsigned char *longer = calloc(1, len + 1);
  memcpy(longer, buf, len);
  cr_expect_eq(record_decode(longer, len + 1, &out), RECORD_BAD_LENGTH);
  free(longer);
  free(buf);
}

Test(record, another_format_version_is_refused) {
  struct cache_record in = sample(), out;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  buf[0] = RECORD_FORMAT_VERSION + 1;
  cr_expect_eq(record_decode(buf, len, &out), RECORD_BAD_VERSION);
  free(buf);
}

Test(record, impossible_body_length_is_refused) {
  struct cache_record in = sample(), out;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  buf[35] = 0xff; /* body_len's top byte: > RECORD_MAX_BODY_LEN */
  cr_expect_eq(record_decode(buf, len, &out), RECORD_BAD_LENGTH);
  free(buf);
}

Test(record, times_out_of_order_are_refused) {
  struct cache_record in = sample(), out;
  in.stale_until = in.fresh_until - 1;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  cr_expect_eq(record_decode(buf, len, &out), RECORD_BAD_TIMES);
  free(buf);
}

Test(record, ttl_left_and_age) {
  struct cache_record record = sample();
  cr_expect_eq(record_ttl_left(&record, record.fetched_at + 100), 200);
  cr_expect_eq(record_ttl_left(&record, record.fresh_until + 30), -30);
  cr_expect_eq(record_age(&record, record.fetched_at + 42), 42);
  cr_expect_eq(record_age(&record, record.fetched_at - 5), 0, "a clock stepped back gives 0");
}

Test(record, every_decode_result_has_a_message) {
  for (int result = RECORD_OK; result <= RECORD_BAD_TIMES; result++)
    cr_expect(strlen(record_decode_strerror((enum record_decode_result)result)) > 0);
}

/* fetched at 1000, fresh until 1300 (ttl 300), windows swr 60 and sie 600: stale_until 1900. */
static struct cache_record windows(uint16_t status) {
  struct cache_record record = {.upstream_status = status, .fetched_at = 1000, .fresh_until = 1300,
                                .stale_until = 1900};
  return record;
}

Test(freshness, windows_follow_rfc5861) {
  struct cache_record record = windows(200);
  cr_expect_eq(record_freshness(&record, 1000, 60, 600), FRESHNESS_FRESH);
  cr_expect_eq(record_freshness(&record, 1299, 60, 600), FRESHNESS_FRESH);
  cr_expect_eq(record_freshness(&record, 1300, 60, 600), FRESHNESS_STALE_WHILE_REVALIDATE);
  cr_expect_eq(record_freshness(&record, 1359, 60, 600), FRESHNESS_STALE_WHILE_REVALIDATE);
  cr_expect_eq(record_freshness(&record, 1360, 60, 600), FRESHNESS_STALE_IF_ERROR);
  cr_expect_eq(record_freshness(&record, 1899, 60, 600), FRESHNESS_STALE_IF_ERROR);
  cr_expect_eq(record_freshness(&record, 1900, 60, 600), FRESHNESS_EXPIRED);
}

Test(freshness, stale_until_bounds_every_window) {
  struct cache_record record = windows(200);
  /* the configuration grew after the record was written: the record's bound still holds */
  cr_expect_eq(record_freshness(&record, 1950, 60, 86400), FRESHNESS_EXPIRED);
  cr_expect_eq(record_freshness(&record, 1950, 86400, 0), FRESHNESS_EXPIRED);
}

Test(freshness, zero_windows_mean_expired_at_once) {
  struct cache_record record = windows(200);
  cr_expect_eq(record_freshness(&record, 1300, 0, 0), FRESHNESS_EXPIRED);
  cr_expect_not(record_usable_stale(&record, 1300, 0, 0));
}

Test(freshness, a_remembered_404_is_never_stale) {
  struct cache_record record = windows(404);
  cr_expect_eq(record_freshness(&record, 1299, 60, 600), FRESHNESS_FRESH);
  cr_expect_eq(record_freshness(&record, 1300, 60, 600), FRESHNESS_EXPIRED);
  cr_expect_not(record_usable_stale(&record, 1310, 60, 600));
}

Test(freshness, usable_stale_spans_both_windows) {
  struct cache_record record = windows(200);
  cr_expect_not(record_usable_stale(&record, 1200, 60, 600), "fresh is not stale");
  cr_expect(record_usable_stale(&record, 1330, 60, 600));
  cr_expect(record_usable_stale(&record, 1800, 60, 600));
  cr_expect(record_usable_stale(&record, 1330, 60, 0), "within swr, sie 0");
  cr_expect_not(record_usable_stale(&record, 1900, 60, 600));
}
