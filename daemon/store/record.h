/* record: the value stored in LMDB (and, sealed, in the shared tier) for one enrollment id.
 * Pure encoding and decoding.
 *
 * Layout of format 2, little-endian, RECORD_HEADER_LEN bytes, the upstream's validators, then
 * the body:
 *   u32 format_version   RECORD_FORMAT_VERSION (1 is still read, below); another is refused,
 *                        never misread
 *   u16 upstream_status  the upstream's HTTP status (200, or 404 for a remembered absence)
 *   u16 flags            reserved, 0
 *   i64 fetched_at       CLOCK_REALTIME seconds when the upstream answered (or renewed it: 304)
 *   i64 fresh_until      served without asking upstream until then
 *   i64 stale_until      past this the record is garbage for every purpose
 *   u32 body_len
 *   u8[16] body_digest   validators.h's SHA-256 prefix of the body: the ETag, computed once
 *                        when the record was made, never on a hit
 *   u8  etag_len         the upstream's ETag (0: none), at most UPSTREAM_ETAG_MAX
 *   u8  last_modified_len the upstream's Last-Modified (0: none)
 *   u16 reserved         0
 *   then etag_len bytes, last_modified_len bytes, body_len bytes: the upstream body, byte for byte
 * Format 1 (a file written before the ETag) is the first 36 bytes of that header then the body:
 * it decodes with no upstream validators and no digest (digest_unknown), so that an upgrade keeps
 * the cache. record_digest computes that digest where an answer needs it, and record_encode
 * where such a record is written again: never in the decode itself, which the sweeper, the
 * reclaimer and the listing run on every entry they touch.
 * Times are wall-clock seconds because they must survive a restart. */
#ifndef FLIPCACHED_RECORD_H
#define FLIPCACHED_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "validators.h"

#define RECORD_FORMAT_VERSION 2u
#define RECORD_HEADER_LEN 56u
#define RECORD_V1_HEADER_LEN 36u
#define RECORD_MAX_BODY_LEN (64u * 1024u * 1024u)

struct cache_record {
  uint16_t upstream_status;
  uint16_t flags;
  int64_t fetched_at;
  int64_t fresh_until;
  int64_t stale_until;
  const unsigned char *body; /* not owned: points into the caller's or the decoded buffer */
  uint32_t body_len;
  unsigned char body_digest[BODY_DIGEST_LEN]; /* the ETag's (validators.h); read it through
                                                 record_digest */
  bool digest_unknown;       /* decoded from format 1: body_digest was never computed */
  /* The upstream's validators, not owned (as body), checked by validators.h before they were
   * kept; lengths 0 when the upstream sent none. */
  const char *upstream_etag;
  uint8_t upstream_etag_len;
  const char *last_modified;
  uint8_t last_modified_len;
};

enum record_decode_result {
  RECORD_OK,
  RECORD_TRUNCATED,   /* shorter than its header says */
  RECORD_BAD_VERSION, /* written by another format version */
  RECORD_BAD_LENGTH,  /* longer than its header says, or an impossible body length */
  RECORD_BAD_TIMES,   /* times out of order */
};

size_t record_encoded_len(const struct cache_record *record);
/* Writes record_encoded_len(record) bytes to out, always in RECORD_FORMAT_VERSION (a format 1
 * record's digest computed then). */
void record_encode(const struct cache_record *record, unsigned char *out);
/* The body's digest, the ETag's (validators.h): the one kept, or for a format 1 record the one
 * computed now. */
void record_digest(const struct cache_record *record, unsigned char out[BODY_DIGEST_LEN]);
/* Decodes buf[0..len); on RECORD_OK, out->body points into buf. */
enum record_decode_result record_decode(const void *buf, size_t len, struct cache_record *out);
const char *record_decode_strerror(enum record_decode_result result);

/* What a record may be used for at `now` (RFC 5861's windows, measured from fresh_until). */
enum record_freshness {
  FRESHNESS_FRESH,                  /* serve it; the upstream is not asked */
  FRESHNESS_STALE_WHILE_REVALIDATE, /* serve it at once, and refresh it in the background */
  FRESHNESS_STALE_IF_ERROR,         /* ask the upstream; serve it only if the upstream fails */
  FRESHNESS_EXPIRED,                /* of no use: ask the upstream */
};

/* Only 200 records have stale windows: a remembered 404 is fresh or of no use. Every window
 * ends at stale_until, whatever the current windows say. */
enum record_freshness record_freshness(const struct cache_record *record, int64_t now,
                                       unsigned stale_while_revalidate, unsigned stale_if_error);
/* True when a stale copy may answer for a failed fetch: within either stale window. */
bool record_usable_stale(const struct cache_record *record, int64_t now,
                         unsigned stale_while_revalidate, unsigned stale_if_error);


/* The conditions a refresh of record may send (NUL-terminated, "" for none): Flip's ETag and
 * Last-Modified, each only when it passes validators.h's check again here, where stored bytes
 * (a cache file, another host's sealed copy) become header lines of our own request. false when
 * neither is left. */
bool record_conditions(const struct cache_record *record, char etag[UPSTREAM_ETAG_MAX + 1],
                       char last_modified[UPSTREAM_LAST_MODIFIED_MAX + 1]);

/* Seconds left fresh (negative once stale): the ttl= of Cache-Status. */
int64_t record_ttl_left(const struct cache_record *record, int64_t now);
/* Seconds since it was fetched, never negative (a clock stepped back gives 0): the Age header. */
int64_t record_age(const struct cache_record *record, int64_t now);

#endif
