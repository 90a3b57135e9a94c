/* cache_status: the RFC 9211 Cache-Status header of an enrollment answer, and the decimal numbers
 * of the other headers, written without printf (they run on every hit). Pure. */
#ifndef FLIPCACHED_CACHE_STATUS_H
#define FLIPCACHED_CACHE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 9211 Cache-Status of one enrollment response; rendered as "flipcached; ...". */
struct cache_status {
  bool hit;             /* answered from the cache: "hit; ttl=N" */
  int64_t ttl;          /* with hit: seconds left fresh, negative when a stale copy is served */
  const char *fwd;      /* NULL, or why the request went upstream: "uri-miss", "stale" */
  int fwd_status;       /* with fwd: the upstream's status when it is worth saying (not 200), else 0 */
  bool stored;          /* the upstream's answer was stored */
  bool collapsed;       /* answered by another request's fetch */
  const char *detail;   /* NULL, or a token saying what went wrong, e.g. "upstream_timeout" */
  bool shared_hit;      /* answered by the fleet's shared tier: a "flipcached-shared; hit;
                           ttl=N" member goes first (RFC 9211: the cache nearest the origin) */
  int64_t shared_ttl;   /* with shared_hit: the shared copy's seconds left fresh */
};

/* Room render_decimal needs: "-9223372036854775808" and its NUL. */
#define RENDER_DECIMAL_MAX 21

/* Writes value in decimal, NUL-terminated, at the end of buf; returns where it starts. For the
 * numbers of every header (no printf on the hit path). */
const char *render_decimal(long long value, char buf[RENDER_DECIMAL_MAX]);

/* The Cache-Control value of an enrollment answer fresh for max_age more seconds (0 when it is
 * stale, or was never to be kept): "private, max-age=N". private, because an enrollment is
 * personal data that no shared cache may keep. */
#define CACHE_CONTROL_MAX 48
size_t render_cache_control(long long max_age, char *out, size_t out_len);

/* Writes the header value into out (NUL-terminated, truncated to out_len) and returns its length. */
size_t render_cache_status(const struct cache_status *status, char *out, size_t out_len);

#endif
