/* libFuzzer: the request-head parser never crashes or reads out of bounds, answers the same
 * whether the bytes come at once or one by one, and what it accepts is strictly formed; the
 * access rules (Host, Origin, Sec-Fetch-Site) then read its fields without reading past them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum http1_result parse_at_once(const uint8_t *data, size_t size, struct http1_request *out,
                                       int *status) {
  char *buf = malloc(size ? size : 1);
  if (!buf)
    abort();
  memcpy(buf, data, size);
  size_t scanned = 0;
  enum http1_result result = http1_parse(buf, size, &scanned, out, status);
  if (result == HTTP1_COMPLETE) {
    /* The target lies inside the head (but the "/" of an absolute-form target without a path),
     * NUL-terminated, of visible ASCII only, and is origin-form. */
    bool constant_root = out->absolute_form && out->target_len == 1 &&
                         (out->target < buf || out->target >= buf + size);
    if ((!constant_root &&
         (out->target < buf || out->target + out->target_len >= buf + out->head_len)) ||
        out->target[out->target_len] != '\0' || out->target_len == 0 ||
        (out->absolute_form && out->target[0] != '/'))
      abort();
    if (out->raw_target < buf || out->raw_target + out->raw_target_len >= buf + out->head_len)
      abort();
    for (size_t i = 0; i < out->target_len; i++)
      if ((unsigned char)out->target[i] <= 0x20 || (unsigned char)out->target[i] >= 0x7f)
        abort();
    /* No NUL and no bare LF anywhere in an accepted head. */
    for (size_t i = 0; i < out->head_len; i++) {
      if (data[i] == '\0' || (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')))
        abort();
    }
    if (out->head_len > HTTP1_MAX_HEAD || out->head_len > size)
      abort();
    /* The captured fields lie inside the head; the web rules decide on them alone. */
    const char *fields[3] = {out->host, out->origin, out->fetch_site};
    size_t lens[3] = {out->host_len, out->origin_len, out->fetch_site_len};
    for (int i = 0; i < 3; i++)
      if (fields[i] && (fields[i] < buf || fields[i] + lens[i] > buf + out->head_len))
        abort();
    static struct name_list hosts = {1, {"flip.internal"}}, origins = {1, {"http://localhost:3000"}};
    bool listed;
    enum access_web_verdict verdict = access_check_web(&hosts, &origins, out, &listed);
    if (listed && (verdict != ACCESS_WEB_OK || out->origin_count != 1))
      abort();
  }
  free(buf);
  return result;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct http1_request whole;
  int whole_status = 0;
  enum http1_result whole_result = parse_at_once(data, size, &whole, &whole_status);
  if (whole_result == HTTP1_REFUSED && whole_status != 400 && whole_status != 414 &&
      whole_status != 431 && whole_status != 505)
    abort();

  /* Byte by byte on one buffer, as a connection reads it: the first answer that is not
   * "incomplete" must be the one parsing everything at once gives. */
  char *buf = malloc(size ? size : 1);
  if (!buf)
    abort();
  memcpy(buf, data, size);
  size_t scanned = 0;
  for (size_t len = 1; len <= size; len++) {
    struct http1_request part;
    int status = 0;
    enum http1_result result = http1_parse(buf, len, &scanned, &part, &status);
    if (result == HTTP1_INCOMPLETE)
      continue;
    struct http1_request prefix;
    int prefix_status = 0;
    enum http1_result expected = parse_at_once(data, len, &prefix, &prefix_status);
    if (result != expected || status != prefix_status)
      abort();
    if (result == HTTP1_COMPLETE &&
        (part.head_len != prefix.head_len || part.method != prefix.method ||
         part.keep_alive != prefix.keep_alive || part.carries_body != prefix.carries_body))
      abort();
    /* Once complete or refused on a prefix, the whole input agrees. */
    if (whole_result != result || (result == HTTP1_COMPLETE && whole.head_len != part.head_len))
      abort();
    break;
  }
  free(buf);
  return 0;
}
