/* validators: the body's ETag, If-None-Match, and the upstream's validators (validators.h). */
#include "validators.h"

#include <openssl/evp.h>
#include <string.h>

/* SHA-256, fetched once for the process (as seal.c does: OpenSSL 3 looks an implicit algorithm
 * up at every use). Loop thread only; never freed. */
static EVP_MD *sha256(void) {
  static EVP_MD *md;
  if (!md)
    md = EVP_MD_fetch(NULL, "SHA-256", NULL);
  return md;
}

bool body_digest(const void *body, size_t len, unsigned char digest[BODY_DIGEST_LEN]) {
  unsigned char full[EVP_MAX_MD_SIZE];
  unsigned int full_len = 0;
  EVP_MD *md = sha256();
  if (!md || EVP_Digest(body, len, full, &full_len, md, NULL) != 1 || full_len < BODY_DIGEST_LEN) {
    memset(digest, 0, BODY_DIGEST_LEN);
    return false;
  }
  memcpy(digest, full, BODY_DIGEST_LEN);
  return true;
}

void etag_render(const unsigned char digest[BODY_DIGEST_LEN], char out[ETAG_TEXT_MAX]) {
  static const char HEX[] = "0123456789abcdef";
  size_t at = 0;
  out[at++] = '"';
  for (size_t i = 0; i < BODY_DIGEST_LEN; i++) {
    out[at++] = HEX[digest[i] >> 4];
    out[at++] = HEX[digest[i] & 15];
  }
  out[at++] = '"';
  out[at] = '\0';
}

static bool is_etagc(unsigned char c) { return c == 0x21 || (c >= 0x23 && c != 0x7f); }

/* The entity-tag at text[*at..len): its opaque-tag (quotes included) in *opaque and
 * *opaque_len, *at moved past it. false when no well-formed entity-tag starts there. */
static bool read_entity_tag(const char *text, size_t len, size_t *at, const char **opaque,
                            size_t *opaque_len) {
  size_t i = *at;
  if (i + 1 < len && text[i] == 'W' && text[i + 1] == '/')
    i += 2;
  if (i >= len || text[i] != '"')
    return false;
  size_t start = i++;
  while (i < len && is_etagc((unsigned char)text[i]))
    i++;
  if (i >= len || text[i] != '"')
    return false;
  i++;
  *opaque = text + start;
  *opaque_len = i - start;
  *at = i;
  return true;
}

bool if_none_match_matches(const char *list, size_t len, const char *etag) {
  size_t etag_at = 0, etag_len = strlen(etag);
  const char *ours;
  size_t ours_len;
  if (!read_entity_tag(etag, etag_len, &etag_at, &ours, &ours_len))
    return false;
  size_t i = 0, end = len;
  while (i < end && (list[i] == ' ' || list[i] == '\t'))
    i++;
  while (end > i && (list[end - 1] == ' ' || list[end - 1] == '\t'))
    end--;
  if (end - i == 1 && list[i] == '*') /* any current representation */
    return true;
  while (i < end) {
    while (i < end && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
      i++;
    if (i >= end)
      break;
    const char *theirs;
    size_t theirs_len;
    if (read_entity_tag(list, end, &i, &theirs, &theirs_len)) {
      if (theirs_len == ours_len && memcmp(theirs, ours, ours_len) == 0)
        return true;
      continue;
    }
    while (i < end && list[i] != ',') /* skip a malformed member ("*" in a list too) */
      i++;
  }
  return false;
}

bool upstream_etag_valid(const char *value, size_t len) {
  size_t at = 0;
  const char *opaque;
  size_t opaque_len;
  return len > 0 && len <= UPSTREAM_ETAG_MAX &&
         read_entity_tag(value, len, &at, &opaque, &opaque_len) && at == len;
}

static bool digits(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] < '0' || p[i] > '9')
      return false;
  return true;
}

static bool one_of(const char *p, const char *names, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (memcmp(p, names + 3 * i, 3) == 0)
      return true;
  return false;
}

bool upstream_last_modified_valid(const char *value, size_t len) {
  /* "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes, every one in its place. */
  if (len != 29)
    return false;
  const char *v = value;
  return one_of(v, "MonTueWedThuFriSatSun", 7) && v[3] == ',' && v[4] == ' ' && digits(v + 5, 2) &&
         v[7] == ' ' && one_of(v + 8, "JanFebMarAprMayJunJulAugSepOctNovDec", 12) &&
         v[11] == ' ' && digits(v + 12, 4) && v[16] == ' ' && digits(v + 17, 2) &&
         v[19] == ':' && digits(v + 20, 2) && v[22] == ':' && digits(v + 23, 2) &&
         memcmp(v + 25, " GMT", 4) == 0;
}
