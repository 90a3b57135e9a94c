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

Test(record, upstream_validators_and_the_digest_round_trip) {
  struct cache_record in = sample(), out;
  static const char ETAG[] = "W/\"v7\"", LAST[] = "Tue, 01 Dec 2026 10:00:00 GMT";
  for (int i = 0; i < BODY_DIGEST_LEN; i++)
    in.body_digest[i] = (unsigned char)(i * 17);
  in.upstream_etag = ETAG;
  in.upstream_etag_len = sizeof(ETAG) - 1;
  in.last_modified = LAST;
  in.last_modified_len = sizeof(LAST) - 1;
  size_t len;
  unsigned char *buf = encode(&in, &len);
  cr_assert_eq(len, RECORD_HEADER_LEN + sizeof(ETAG) - 1 + sizeof(LAST) - 1 + sizeof(BODY) - 1);
  cr_assert_eq(record_decode(buf, len, &out), RECORD_OK);
  cr_expect(memcmp(out.body_digest, in.body_digest, BODY_DIGEST_LEN) == 0);
  cr_expect(out.upstream_etag_len == sizeof(ETAG) - 1 && memcmp(out.upstream_etag, ETAG, 6) == 0);
  cr_expect(out.last_modified_len == sizeof(LAST) - 1 &&
            memcmp(out.last_modified, LAST, out.last_modified_len) == 0);
  cr_expect(out.body_len == in.body_len && memcmp(out.body, BODY, out.body_len) == 0);
  buf[52] = UPSTREAM_ETAG_MAX + 1; /* a length no writer gives */
  cr_expect_neq(record_decode(buf, len, &out), RECORD_OK);
  free(buf);
}

/* A cache file written before the ETag (format 1) is still read: its digest is not computed
 * by the decode (the sweeper and the reclaimer decode every entry they touch), but where it is
 * asked for, equal to the one a new record of the same body carries; written again, the record
 * is format 2 with that digest. */
Test(record, a_format_1_record_still_decodes_with_its_digest) {
  unsigned char v1[RECORD_V1_HEADER_LEN + sizeof(BODY) - 1] = {0};
  v1[0] = 1;
  v1[4] = 200;
  int64_t times[3] = {1764000000, 1764000300, 1764086700};
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < 8; i++)
      v1[8 + 8 * t + i] = (unsigned char)((uint64_t)times[t] >> (8 * i));
  v1[32] = sizeof(BODY) - 1;
  memcpy(v1 + RECORD_V1_HEADER_LEN, BODY, sizeof(BODY) - 1);
  struct cache_record out;
  cr_assert_eq(record_decode(v1, sizeof(v1), &out), RECORD_OK);
  cr_expect_eq(out.fresh_until, 1764000300);
  cr_expect(out.body_len == sizeof(BODY) - 1 && memcmp(out.body, BODY, out.body_len) == 0);
  cr_expect(out.upstream_etag_len == 0 && out.last_modified_len == 0);
  unsigned char want[BODY_DIGEST_LEN];
  cr_assert(body_digest(BODY, sizeof(BODY) - 1, want));
  cr_expect(out.digest_unknown);
  unsigned char got[BODY_DIGEST_LEN];
  record_digest(&out, got);
  cr_expect(memcmp(got, want, BODY_DIGEST_LEN) == 0);
  size_t len;
  unsigned char *again = encode(&out, &len);
  struct cache_record v2;
  cr_assert_eq(record_decode(again, len, &v2), RECORD_OK);
  cr_expect_eq(again[0], RECORD_FORMAT_VERSION);
  cr_expect(!v2.digest_unknown && memcmp(v2.body_digest, want, BODY_DIGEST_LEN) == 0);
  free(again);
  cr_expect_eq(record_decode(v1, sizeof(v1) - 1, &out), RECORD_TRUNCATED);
}

/* Stored validators become header lines of a refresh: each is checked again there, so that bytes
 * of a cache file or a shared copy that break their grammar (a CR LF, no quotes) are never sent. */
Test(record, conditions_send_only_validators_that_pass_their_check) {
  struct cache_record record = sample();
  char etag[UPSTREAM_ETAG_MAX + 1], last[UPSTREAM_LAST_MODIFIED_MAX + 1];
  cr_expect(!record_conditions(&record, etag, last), "no validator, no condition");
  cr_expect(etag[0] == '\0' && last[0] == '\0');
  static const char GOOD_ETAG[] = "W/\"v7\"", GOOD_LAST[] = "Tue, 01 Dec 2026 10:00:00 GMT";
  record.upstream_etag = GOOD_ETAG;
  record.upstream_etag_len = sizeof(GOOD_ETAG) - 1;
  record.last_modified = GOOD_LAST;
  record.last_modified_len = sizeof(GOOD_LAST) - 1;
  cr_expect(record_conditions(&record, etag, last));
  cr_expect_str_eq(etag, GOOD_ETAG);
  cr_expect_str_eq(last, GOOD_LAST);
  static const char BAD_ETAG[] = "\"v7\"\r\nX-Injected: 1", BAD_LAST[] = "yesterday";
  record.upstream_etag = BAD_ETAG;
  record.upstream_etag_len = sizeof(BAD_ETAG) - 1;
  cr_expect(record_conditions(&record, etag, last), "the date still goes");
  cr_expect_str_eq(etag, "");
  cr_expect_str_eq(last, GOOD_LAST);
  record.last_modified = BAD_LAST;
  record.last_modified_len = sizeof(BAD_LAST) - 1;
  cr_expect(!record_conditions(&record, etag, last), "nothing left to send");
  cr_expect(etag[0] == '\0' && last[0] == '\0');
}
