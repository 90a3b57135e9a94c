#include "record.h"

#include <string.h>
#include <time.h>

static void put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put_i64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(u >> (8 * i));
}
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}
static int64_t get_i64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return (int64_t)v;
}

size_t record_encoded_len(const struct cache_record *record) {
  return RECORD_HEADER_LEN + (size_t)record->upstream_etag_len + record->last_modified_len +
         (size_t)record->body_len;
}

void record_encode(const struct cache_record *record, unsigned char *out) {
  put_u32(out + 0, RECORD_FORMAT_VERSION);
  put_u16(out + 4, record->upstream_status);
  put_u16(out + 6, record->flags);
  put_i64(out + 8, record->fetched_at);
  put_i64(out + 16, record->fresh_until);
  put_i64(out + 24, record->stale_until);
  put_u32(out + 32, record->body_len);
  record_digest(record, out + 36);
  out[52] = record->upstream_etag_len;
  out[53] = record->last_modified_len;
  put_u16(out + 54, 0);
  unsigned char *at = out + RECORD_HEADER_LEN;
  if (record->upstream_etag_len)
    memcpy(at, record->upstream_etag, record->upstream_etag_len);
  at += record->upstream_etag_len;
  if (record->last_modified_len)
    memcpy(at, record->last_modified, record->last_modified_len);
  at += record->last_modified_len;
  if (record->body_len > 0)
    memcpy(at, record->body, record->body_len);
}

enum record_decode_result record_decode(const void *buf, size_t len, struct cache_record *out) {
  const unsigned char *p = buf;
  memset(out, 0, sizeof(*out));
  if (len < 4)
    return RECORD_TRUNCATED;
  uint32_t version = get_u32(p);
  if (version != RECORD_FORMAT_VERSION && version != 1)
    return RECORD_BAD_VERSION;
  size_t header_len = version == 1 ? RECORD_V1_HEADER_LEN : RECORD_HEADER_LEN;
  if (len < header_len)
    return RECORD_TRUNCATED;
  out->upstream_status = get_u16(p + 4);
  out->flags = get_u16(p + 6);
  out->fetched_at = get_i64(p + 8);
  out->fresh_until = get_i64(p + 16);
  out->stale_until = get_i64(p + 24);
  out->body_len = get_u32(p + 32);
  size_t validators_len = 0;
  if (version != 1) {
    memcpy(out->body_digest, p + 36, BODY_DIGEST_LEN);
    out->upstream_etag_len = p[52];
    out->last_modified_len = p[53];
    validators_len = (size_t)out->upstream_etag_len + out->last_modified_len;
    if (out->upstream_etag_len > UPSTREAM_ETAG_MAX ||
        out->last_modified_len > UPSTREAM_LAST_MODIFIED_MAX || get_u16(p + 54) != 0)
      return RECORD_BAD_LENGTH;
  }
  if (out->body_len > RECORD_MAX_BODY_LEN)
    return RECORD_BAD_LENGTH;
  size_t rest = len - header_len;
  if (rest < validators_len + out->body_len)
    return RECORD_TRUNCATED;
  if (rest > validators_len + out->body_len)
    return RECORD_BAD_LENGTH;
  if (out->fresh_until < out->fetched_at || out->stale_until < out->fresh_until)
    return RECORD_BAD_TIMES;
  const unsigned char *at = p + header_len;
  out->upstream_etag = out->upstream_etag_len ? (const char *)at : NULL;
  at += out->upstream_etag_len;
  out->last_modified = out->last_modified_len ? (const char *)at : NULL;
  at += out->last_modified_len;
  out->body = at;
  out->digest_unknown = version == 1;
  return RECORD_OK;
}

void record_digest(const struct cache_record *record, unsigned char out[BODY_DIGEST_LEN]) {
  if (record->digest_unknown)
    body_digest(record->body, record->body_len, out);
  else
    memcpy(out, record->body_digest, BODY_DIGEST_LEN);
}

const char *record_decode_strerror(enum record_decode_result result) {
  switch (result) {
  case RECORD_OK:
    return "ok";
  case RECORD_TRUNCATED:
    return "record truncated";
  case RECORD_BAD_VERSION:
    return "record written by another format version";
  case RECORD_BAD_LENGTH:
    return "record length does not match its header";
  case RECORD_BAD_TIMES:
    return "record times out of order";
  }
  return "unknown record error";
}

int64_t record_ttl_left(const struct cache_record *record, int64_t now) {
  return record->fresh_until - now;
}

int64_t record_age(const struct cache_record *record, int64_t now) {
  return now > record->fetched_at ? now - record->fetched_at : 0;
}

enum record_freshness record_freshness(const struct cache_record *record, int64_t now,
                                       unsigned stale_while_revalidate, unsigned stale_if_error) {
  if (now < record->fresh_until)
    return FRESHNESS_FRESH;
  if (record->upstream_status != 200 || now >= record->stale_until)
    return FRESHNESS_EXPIRED;
  if (now < record->fresh_until + (int64_t)stale_while_revalidate)
    return FRESHNESS_STALE_WHILE_REVALIDATE;
  if (now < record->fresh_until + (int64_t)stale_if_error)
    return FRESHNESS_STALE_IF_ERROR;
  return FRESHNESS_EXPIRED;
}

bool record_usable_stale(const struct cache_record *record, int64_t now,
                         unsigned stale_while_revalidate, unsigned stale_if_error) {
  enum record_freshness freshness =
      record_freshness(record, now, stale_while_revalidate, stale_if_error);
  return freshness == FRESHNESS_STALE_WHILE_REVALIDATE || freshness == FRESHNESS_STALE_IF_ERROR;
}

/* Copies a validator of len bytes when valid() accepts it; else "". */
static void condition_of(const char *value, size_t len, bool (*valid)(const char *, size_t),
                         char *out) {
  if (len > 0 && valid(value, len))
    memcpy(out, value, len);
  else
    len = 0;
  out[len] = '\0';
}

bool record_conditions(const struct cache_record *record, char etag[UPSTREAM_ETAG_MAX + 1],
                       char last_modified[UPSTREAM_LAST_MODIFIED_MAX + 1]) {
  condition_of(record->upstream_etag, record->upstream_etag_len, upstream_etag_valid, etag);
  condition_of(record->last_modified, record->last_modified_len, upstream_last_modified_valid,
               last_modified);
  return etag[0] || last_modified[0];
}
