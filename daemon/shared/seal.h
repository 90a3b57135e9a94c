/* seal: what makes the shared tier's Redis hold nothing it could read or forge. Pure but for
 * OpenSSL's libcrypto (AES-256-GCM, HMAC-SHA256, its CSPRNG for nonces); no I/O.
 *
 * Keys ([shared] key_file, or systemd's credential flip-shared-key): one key a line, 64 hex
 * digits (32 bytes of a random key: `openssl rand -hex 32`); blank lines and lines starting
 * with '#' are skipped. The first key seals and names; every key opens, so a fleet rotates keys
 * without a flag day (add the new key second everywhere, then move it first, then drop the old
 * one). From each key three independent keys are derived with HMAC-SHA256 over fixed labels:
 * the AEAD key, the naming key, and a 4-byte fingerprint that tells a reader which key sealed a
 * value (never the key itself).
 *
 * A sealed value:   magic "fcS1" (4) | fingerprint (4) | clear (caller's length) |
 *                   nonce (12) | ciphertext (as long as the plaintext) | tag (16)
 * "clear" is data Redis's scripts must read (an entry's times): not secret, but authenticated.
 * The associated data is the caller's context (what the value is and where it belongs: for an
 * entry the record format, the prefix and the id) followed by the value's first 8 + clear
 * bytes, so that a value moved to another id, another prefix or another format does not open.
 *
 * Nonces are 96 random bits: with AES-GCM's bound of 2^32 seals per key at random nonces, a
 * fleet writing 1,000 values a second reaches it after 136 years; rotate the key sooner.
 *
 * Names: seal_name is the hex of the first 16 bytes of HMAC-SHA256(naming key, id): Redis's key
 * for an id reveals neither the id nor, without the key, which ids exist. */
#ifndef FLIPCACHED_SEAL_H
#define FLIPCACHED_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_BYTES 32
#define SEAL_MAX_KEYS 8
#define SEAL_MAGIC "fcS1"
#define SEAL_HEAD_BYTES 8      /* magic and fingerprint */
#define SEAL_NONCE_BYTES 12
#define SEAL_TAG_BYTES 16
#define SEAL_OVERHEAD (SEAL_HEAD_BYTES + SEAL_NONCE_BYTES + SEAL_TAG_BYTES)
#define SEAL_NAME_HEX 32       /* hex digits of a name: 128 bits of the HMAC */
#define SEAL_MAX_CONTEXT 256

struct seal_keys {
  size_t count;                                       /* 0: none loaded */
  unsigned char aead[SEAL_MAX_KEYS][SEAL_KEY_BYTES];  /* AES-256-GCM keys */
  unsigned char naming[SEAL_MAX_KEYS][SEAL_KEY_BYTES];
  unsigned char fingerprint[SEAL_MAX_KEYS][4];
};

/* Parses a key file's text into keys (derived as above; the raw keys are wiped). 0, or -1 with
 * err naming the line and what is wrong with it, never its content. */
int seal_keys_parse(const char *text, size_t len, struct seal_keys *keys, char *err,
                    size_t err_len);
void seal_keys_wipe(struct seal_keys *keys);

/* The name of `subject` (an enrollment id) under key `index` (0: the sealing key), as
 * SEAL_NAME_HEX hex digits and a NUL. */
void seal_name(const struct seal_keys *keys, size_t index, const char *subject,
               char out[SEAL_NAME_HEX + 1]);

/* The length of a sealed value of clear_len + plain_len bytes. */
size_t seal_sealed_len(size_t clear_len, size_t plain_len);
/* Seals plain under the first key into out (seal_sealed_len bytes). false: libcrypto failed
 * (no randomness): nothing may be written. */
bool seal_value(const struct seal_keys *keys, const char *context, const void *clear,
                size_t clear_len, const void *plain, size_t plain_len, unsigned char *out);
/* Opens a sealed value whose clear part is clear_len bytes, with whichever key its fingerprint
 * names: the plaintext into plain (room for sealed_len - SEAL_OVERHEAD - clear_len bytes), its
 * length in *plain_len. false: not a sealed value, an unknown key, or forged, damaged, or sealed
 * for another context; plain's content is then undefined. */
bool seal_open(const struct seal_keys *keys, const char *context, const unsigned char *sealed,
               size_t sealed_len, size_t clear_len, unsigned char *plain, size_t *plain_len);

#endif
