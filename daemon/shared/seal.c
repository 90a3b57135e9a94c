/* seal: AES-256-GCM values and HMAC names for the shared tier (seal.h says why and how). */
#include "seal.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

/* The labels of the three keys derived from each key of the file. */
static const char LABEL_AEAD[] = "flipcached/shared/aead/v1";
static const char LABEL_NAMING[] = "flipcached/shared/naming/v1";
static const char LABEL_FINGERPRINT[] = "flipcached/shared/fingerprint/v1";

/* libcrypto's algorithms, fetched once and kept for the process: OpenSSL 3 looks an algorithm
 * up in its provider tables at each implicit use (EVP_sha256(), HMAC()), which cost more than
 * the cipher itself on a 1.6 KB record (bench/seal_cost.c). Used from the loop's thread only;
 * never freed (reachable until exit). */
static EVP_CIPHER *aes_gcm(void) {
  static EVP_CIPHER *cipher;
  if (!cipher)
    cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  return cipher;
}

static EVP_MAC *hmac(void) {
  static EVP_MAC *mac;
  if (!mac)
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  return mac;
}

/* HMAC-SHA256. false if libcrypto failed; out is then zeroed (never uninitialized). */
static bool hmac_sha256(const unsigned char *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32]) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  EVP_MAC_CTX *ctx = hmac() ? EVP_MAC_CTX_new(hmac()) : NULL;
  size_t out_len = 0;
  if (!ctx || EVP_MAC_init(ctx, key, key_len, params) != 1 ||
      EVP_MAC_update(ctx, data, len) != 1 || EVP_MAC_final(ctx, out, &out_len, 32) != 1)
    out_len = 0;
  EVP_MAC_CTX_free(ctx);
  if (out_len != 32)
    memset(out, 0, 32);
  return out_len == 32;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* One line of 64 hex digits into raw; false if it is not that. */
static bool parse_key_line(const char *line, size_t len, unsigned char raw[SEAL_KEY_BYTES]) {
  if (len != 2 * SEAL_KEY_BYTES)
    return false;
  for (size_t i = 0; i < SEAL_KEY_BYTES; i++) {
    int high = hex_value(line[2 * i]), low = hex_value(line[2 * i + 1]);
    if (high < 0 || low < 0)
      return false;
    raw[i] = (unsigned char)(high << 4 | low);
  }
  return true;
}

/* false: libcrypto failed, and no key may be used. */
static bool derive(struct seal_keys *keys, const unsigned char raw[SEAL_KEY_BYTES]) {
  size_t i = keys->count++;
  unsigned char fingerprint[32];
  bool ok = hmac_sha256(raw, SEAL_KEY_BYTES, LABEL_AEAD, sizeof(LABEL_AEAD) - 1, keys->aead[i]) &&
            hmac_sha256(raw, SEAL_KEY_BYTES, LABEL_NAMING, sizeof(LABEL_NAMING) - 1,
                        keys->naming[i]) &&
            hmac_sha256(raw, SEAL_KEY_BYTES, LABEL_FINGERPRINT, sizeof(LABEL_FINGERPRINT) - 1,
                        fingerprint);
  memcpy(keys->fingerprint[i], fingerprint, sizeof(keys->fingerprint[i]));
  return ok;
}

int seal_keys_parse(const char *text, size_t len, struct seal_keys *keys, char *err,
                    size_t err_len) {
  memset(keys, 0, sizeof(*keys));
  unsigned line_number = 0;
  for (size_t at = 0; at < len;) {
    const char *line = text + at;
    const char *end = memchr(line, '\n', len - at);
    size_t line_len = end ? (size_t)(end - line) : len - at;
    at += line_len + (end ? 1 : 0);
    line_number++;
    while (line_len > 0 && (line[line_len - 1] == '\r' || line[line_len - 1] == ' ' ||
                            line[line_len - 1] == '\t'))
      line_len--;
    while (line_len > 0 && (line[0] == ' ' || line[0] == '\t')) {
      line++;
      line_len--;
    }
    if (line_len == 0 || line[0] == '#')
      continue;
    unsigned char raw[SEAL_KEY_BYTES];
    if (!parse_key_line(line, line_len, raw)) {
      explicit_bzero(raw, sizeof(raw));
      seal_keys_wipe(keys);
      snprintf(err, err_len, "line %u is not a key of 64 hex digits (openssl rand -hex 32)",
               line_number);
      return -1;
    }
    if (keys->count == SEAL_MAX_KEYS) {
      explicit_bzero(raw, sizeof(raw));
      seal_keys_wipe(keys);
      snprintf(err, err_len, "line %u: more than %d keys", line_number, SEAL_MAX_KEYS);
      return -1;
    }
    bool derived = derive(keys, raw);
    explicit_bzero(raw, sizeof(raw));
    if (!derived) {
      seal_keys_wipe(keys);
      snprintf(err, err_len, "line %u: libcrypto could not derive its keys", line_number);
      return -1;
    }
  }
  if (keys->count == 0) {
    snprintf(err, err_len, "no key in it (one a line, 64 hex digits: openssl rand -hex 32)");
    return -1;
  }
  return 0;
}

void seal_keys_wipe(struct seal_keys *keys) { explicit_bzero(keys, sizeof(*keys)); }

void seal_name(const struct seal_keys *keys, size_t index, const char *subject,
               char out[SEAL_NAME_HEX + 1]) {
  unsigned char mac[32]; /* all zero if libcrypto failed: one name for all, still sealed per id */
  hmac_sha256(keys->naming[index], SEAL_KEY_BYTES, subject, strlen(subject), mac);
  for (size_t i = 0; i < SEAL_NAME_HEX / 2; i++)
    snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

size_t seal_sealed_len(size_t clear_len, size_t plain_len) {
  return SEAL_OVERHEAD + clear_len + plain_len;
}

/* The cipher context of one seal or open, with its key, nonce and associated data set. */
static EVP_CIPHER_CTX *begin(bool encrypt, const unsigned char *key, const unsigned char *nonce,
                             const char *context, const unsigned char *head, size_t head_len) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int ignored;
  if (!ctx || !aes_gcm() ||
      EVP_CipherInit_ex2(ctx, aes_gcm(), key, nonce, encrypt ? 1 : 0, NULL) != 1 ||
      EVP_CipherUpdate(ctx, NULL, &ignored, (const unsigned char *)context,
                       (int)strlen(context)) != 1 ||
      EVP_CipherUpdate(ctx, NULL, &ignored, head, (int)head_len) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

bool seal_value(const struct seal_keys *keys, const char *context, const void *clear,
                size_t clear_len, const void *plain, size_t plain_len, unsigned char *out) {
  if (keys->count == 0 || plain_len > (size_t)INT32_MAX - 64)
    return false;
  memcpy(out, SEAL_MAGIC, 4);
  memcpy(out + 4, keys->fingerprint[0], 4);
  if (clear_len > 0) /* clear may be NULL then, which memcpy does not allow */
    memcpy(out + SEAL_HEAD_BYTES, clear, clear_len);
  unsigned char *nonce = out + SEAL_HEAD_BYTES + clear_len;
  unsigned char *cipher = nonce + SEAL_NONCE_BYTES;
  if (RAND_bytes(nonce, SEAL_NONCE_BYTES) != 1)
    return false;
  EVP_CIPHER_CTX *ctx = begin(true, keys->aead[0], nonce, context, out,
                              SEAL_HEAD_BYTES + clear_len);
  int written = 0, final_len = 0;
  bool ok = ctx && EVP_EncryptUpdate(ctx, cipher, &written, plain, (int)plain_len) == 1 &&
            EVP_EncryptFinal_ex(ctx, cipher + written, &final_len) == 1 &&
            (size_t)(written + final_len) == plain_len &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_BYTES, cipher + plain_len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

bool seal_open(const struct seal_keys *keys, const char *context, const unsigned char *sealed,
               size_t sealed_len, size_t clear_len, unsigned char *plain, size_t *plain_len) {
  if (sealed_len < SEAL_OVERHEAD + clear_len || sealed_len > (size_t)INT32_MAX ||
      memcmp(sealed, SEAL_MAGIC, 4) != 0)
    return false;
  size_t key = keys->count;
  for (size_t i = 0; i < keys->count && key == keys->count; i++)
    if (memcmp(sealed + 4, keys->fingerprint[i], 4) == 0)
      key = i;
  if (key == keys->count)
    return false;
  const unsigned char *nonce = sealed + SEAL_HEAD_BYTES + clear_len;
  const unsigned char *cipher = nonce + SEAL_NONCE_BYTES;
  size_t cipher_len = sealed_len - SEAL_OVERHEAD - clear_len;
  unsigned char tag[SEAL_TAG_BYTES];
  memcpy(tag, cipher + cipher_len, SEAL_TAG_BYTES); /* the ctrl call takes a non-const pointer */
  EVP_CIPHER_CTX *ctx = begin(false, keys->aead[key], nonce, context, sealed,
                              SEAL_HEAD_BYTES + clear_len);
  int written = 0, final_len = 0;
  bool ok = ctx && EVP_DecryptUpdate(ctx, plain, &written, cipher, (int)cipher_len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_BYTES, tag) == 1 &&
            EVP_DecryptFinal_ex(ctx, plain + written, &final_len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (ok)
    *plain_len = (size_t)(written + final_len);
  return ok;
}
