/* cache_status: the Cache-Status header and the numbers of the others (cache_status.h). */
#include "cache_status.h"

#include <string.h>

/* Appends to a bounded text; once full it stays full and truncated. */
struct text_out {
  char *text;
  size_t cap;
  size_t len;
};

/* Appends as much of text as fits, keeping out NUL-terminated. No printf: this runs on every
 * hit, and vsnprintf was a third of the hit path's instructions (callgrind). */
static void text_append(struct text_out *out, const char *text) {
  size_t len = strlen(text), room = out->cap - 1 - out->len;
  if (len > room)
    len = room;
  memcpy(out->text + out->len, text, len);
  out->len += len;
  out->text[out->len] = '\0';
}

const char *render_decimal(long long value, char buf[RENDER_DECIMAL_MAX]) {
  size_t at = RENDER_DECIMAL_MAX;
  buf[--at] = '\0';
  unsigned long long magnitude = value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;
  do {
    buf[--at] = (char)('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude);
  if (value < 0)
    buf[--at] = '-';
  return buf + at;
}

static void text_append_int(struct text_out *out, long long value) {
  char digits[RENDER_DECIMAL_MAX];
  text_append(out, render_decimal(value, digits));
}

size_t render_cache_status(const struct cache_status *status, char *out, size_t out_len) {
  if (out_len == 0)
    return 0;
  struct text_out text = {out, out_len, 0};
  out[0] = '\0';
  if (status->shared_hit) {
    text_append(&text, "flipcached-shared; hit; ttl=");
    text_append_int(&text, (long long)status->shared_ttl);
    text_append(&text, ", ");
  }
  text_append(&text, "flipcached");
  /* RFC 9211 order: hit, fwd, fwd-status, ttl, stored, collapsed, detail. */
  if (status->hit)
    text_append(&text, "; hit");
  if (status->fwd) {
    text_append(&text, "; fwd=");
    text_append(&text, status->fwd);
  }
  if (status->fwd && status->fwd_status > 0) {
    text_append(&text, "; fwd-status=");
    text_append_int(&text, status->fwd_status);
  }
  if (status->hit) {
    text_append(&text, "; ttl=");
    text_append_int(&text, (long long)status->ttl);
  }
  if (status->stored)
    text_append(&text, "; stored");
  if (status->collapsed)
    text_append(&text, "; collapsed");
  if (status->detail) {
    text_append(&text, "; detail=");
    text_append(&text, status->detail);
  }
  return text.len;
}

size_t render_cache_control(long long max_age, char *out, size_t out_len) {
  if (out_len == 0)
    return 0;
  struct text_out text = {out, out_len, 0};
  out[0] = '\0';
  text_append(&text, "private, max-age=");
  text_append_int(&text, max_age > 0 ? max_age : 0);
  return text.len;
}
