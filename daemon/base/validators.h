/* validators: HTTP validators (RFC 9110 8.8), pure.
 *
 *   - the strong ETag of a stored body: the first 128 bits of its SHA-256, computed once when
 *     the entry is stored (store.c) and kept in the record, rendered as "<32 hex digits>";
 *   - If-None-Match against it (RFC 9110 13.1.2: "*" or a list, weak comparison, as for GET);
 *   - the upstream's own validators (ETag, Last-Modified), which a refresh sends back as
 *     If-None-Match and If-Modified-Since: untrusted bytes from the network, so each is checked
 *     against its grammar and a length bound before it is kept, and a bad one is dropped (never
 *     sent on: a CR or LF in it would be a header of our own request). */
#ifndef FLIPCACHED_VALIDATORS_H
#define FLIPCACHED_VALIDATORS_H

#include <stdbool.h>
#include <stddef.h>

#define BODY_DIGEST_LEN 16 /* bytes of SHA-256 kept */
#define ETAG_TEXT_MAX (2 + 2 * BODY_DIGEST_LEN + 1) /* the quoted hex digits and a NUL */
/* The longest upstream validators kept: longer ones are dropped (a refresh is then sent
 * without that condition, which costs a body, never a wrong answer). */
#define UPSTREAM_ETAG_MAX 128
#define UPSTREAM_LAST_MODIFIED_MAX 64

/* The first BODY_DIGEST_LEN bytes of SHA-256(body). false only when libcrypto fails (out of
 * memory); digest is then zeroed. */
bool body_digest(const void *body, size_t len, unsigned char digest[BODY_DIGEST_LEN]);
/* The ETag header value of a digest: a double-quoted strong entity-tag, NUL-terminated. */
void etag_render(const unsigned char digest[BODY_DIGEST_LEN], char out[ETAG_TEXT_MAX]);

/* RFC 9110 13.1.2 for a GET or HEAD: does the If-None-Match field value `list` (len bytes: "*"
 * or a comma-separated list of entity-tags, weak or strong) match the current representation's
 * etag (a rendered entity-tag)? Weak comparison: W/ is ignored on both sides. A malformed
 * member is skipped; a list with no well-formed member matches nothing, so the answer is the
 * full 200 (always a correct answer to a conditional GET). */
bool if_none_match_matches(const char *list, size_t len, const char *etag);

/* Is value (len bytes, as received, surrounding whitespace trimmed) one entity-tag, weak or
 * strong (RFC 9110 8.8.3: [W/] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text), of at
 * most UPSTREAM_ETAG_MAX bytes? */
bool upstream_etag_valid(const char *value, size_t len);
/* Is value an HTTP-date as a server sends it (IMF-fixdate, RFC 9110 5.6.7: "Sun, 06 Nov 1994
 * 08:49:37 GMT"), checked byte by byte? Others (the obsolete forms) are dropped. */
bool upstream_last_modified_valid(const char *value, size_t len);

#endif
