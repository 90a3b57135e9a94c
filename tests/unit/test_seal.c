/* seal.h: key files, names, and sealed values that open only with a key of the file, for the
 * context they were sealed for, byte for byte as sealed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "seal.h"

#define KEY_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static void keys_of(const char *text, struct seal_keys *keys) {
  char err[200];
  cr_assert_eq(seal_keys_parse(text, strlen(text), keys, err, sizeof(err)), 0, "%s", err);
}

static void refused(const char *text, const char *expected) {
  struct seal_keys keys;
  char err[200] = "";
  cr_assert_eq(seal_keys_parse(text, strlen(text), &keys, err, sizeof(err)), -1, "took %s", text);
  cr_expect(strstr(err, expected) != NULL, "%s", err);
  cr_expect(strstr(err, "0123456789") == NULL, "the message shows the key: %s", err);
  cr_expect_eq(keys.count, 0);
}

Test(seal_keys, a_file_of_one_or_more_keys_with_comments_and_blank_lines) {
  struct seal_keys keys;
  keys_of(KEY_A "\n", &keys);
  cr_expect_eq(keys.count, 1);
  keys_of("# rotated 2026-12\n\n  " KEY_B "  \r\n" KEY_A, &keys);
  cr_expect_eq(keys.count, 2);
}

Test(seal_keys, a_bad_line_is_named_and_its_content_never_shown) {
  refused("", "no key");
  refused("# only a comment\n", "no key");
  refused(KEY_A "\n0123456789abcdef\n", "line 2 is not a key of 64 hex digits");
  refused(KEY_A "0\n", "line 1");
  refused("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\n", "line 1");
  char many[1024] = "";
  for (int i = 0; i < SEAL_MAX_KEYS + 1; i++)
    strcat(many, KEY_A "\n");
  refused(many, "line 9: more than 8 keys");
}

Test(seal_name, names_are_hex_stable_per_key_and_reveal_nothing_of_the_id) {
  struct seal_keys ab, b;
  keys_of(KEY_A "\n" KEY_B "\n", &ab);
  keys_of(KEY_B "\n", &b);
  char n1[SEAL_NAME_HEX + 1], n2[SEAL_NAME_HEX + 1], n3[SEAL_NAME_HEX + 1];
  seal_name(&ab, 0, ID, n1);
  seal_name(&ab, 0, ID, n2);
  cr_expect_str_eq(n1, n2, "the same id, the same name");
  cr_expect_eq(strlen(n1), SEAL_NAME_HEX);
  cr_expect_eq(strspn(n1, "0123456789abcdef"), SEAL_NAME_HEX);
  seal_name(&ab, 1, ID, n2);
  seal_name(&b, 0, ID, n3);
  cr_expect_str_eq(n2, n3, "a key's names do not depend on its place in the file");
  cr_expect_str_neq(n1, n2, "another key, another name");
  seal_name(&ab, 0, "497f6eca-6276-4993-bfeb-53cbbbba6f09", n2);
  cr_expect_str_neq(n1, n2);
  cr_expect(strstr(n1, "497f6eca") == NULL);
}

/* Seals "plain" with a clear part of 16 bytes under keys, into out; its length. */
static size_t seal_of(const struct seal_keys *keys, const char *context, const char *plain,
                      unsigned char *out) {
  const char clear[16] = "0123456789ABCDEF";
  cr_assert(seal_value(keys, context, clear, sizeof(clear), plain, strlen(plain), out));
  return seal_sealed_len(sizeof(clear), strlen(plain));
}

static bool opens(const struct seal_keys *keys, const char *context, const unsigned char *sealed,
                  size_t len, char *plain_out) {
  size_t plain_len = 0;
  unsigned char plain[512];
  bool ok = seal_open(keys, context, sealed, len, 16, plain, &plain_len);
  if (ok && plain_out) {
    memcpy(plain_out, plain, plain_len);
    plain_out[plain_len] = '\0';
  }
  return ok;
}

Test(seal_value, a_value_opens_with_its_key_and_context_and_holds_no_plaintext) {
  struct seal_keys keys;
  keys_of(KEY_A, &keys);
  unsigned char sealed[512];
  const char *plain = "{\"id\":\"" ID "\",\"name\":\"Ada Lovelace\"}";
  size_t len = seal_of(&keys, "entry " ID, plain, sealed);
  cr_expect_eq(len, SEAL_OVERHEAD + 16 + strlen(plain));
  cr_expect(memmem(sealed, len, "Ada", 3) == NULL, "plaintext in the sealed value");
  cr_expect(memmem(sealed, len, "0123456789ABCDEF", 16) == sealed + SEAL_HEAD_BYTES,
            "the clear part is where scripts read it");
  char back[512];
  cr_assert(opens(&keys, "entry " ID, sealed, len, back));
  cr_expect_str_eq(back, plain);
  unsigned char again[512];
  seal_of(&keys, "entry " ID, plain, again);
  cr_expect_neq(memcmp(sealed, again, len), 0, "a fresh nonce every time");
}

Test(seal_value, another_context_another_key_or_any_changed_byte_does_not_open) {
  struct seal_keys a, b, ba;
  keys_of(KEY_A, &a);
  keys_of(KEY_B, &b);
  keys_of(KEY_B "\n" KEY_A, &ba);
  unsigned char sealed[512];
  size_t len = seal_of(&a, "entry " ID, "a body", sealed);
  cr_expect(!opens(&a, "entry 00000000-0000-4000-8000-000000000000", sealed, len, NULL),
            "another id's context");
  cr_expect(!opens(&b, "entry " ID, sealed, len, NULL), "a key not in the file");
  cr_expect(opens(&ba, "entry " ID, sealed, len, NULL), "the old key, second in the file, opens");
  for (size_t i = 0; i < len; i++) {
    unsigned char changed[512];
    memcpy(changed, sealed, len);
    changed[i] ^= 0x01;
    cr_expect(!opens(&a, "entry " ID, changed, len, NULL), "byte %zu changed and it opened", i);
  }
  cr_expect(!opens(&a, "entry " ID, sealed, len - 1, NULL), "cut short");
  cr_expect(!opens(&a, "entry " ID, sealed, 10, NULL), "shorter than the overhead");
  unsigned char sealed_by_ba[512];
  size_t len_ba = seal_of(&ba, "entry " ID, "a body", sealed_by_ba);
  cr_expect(opens(&b, "entry " ID, sealed_by_ba, len_ba, NULL), "the first key seals");
  cr_expect(!opens(&a, "entry " ID, sealed_by_ba, len_ba, NULL));
}

Test(seal_value, an_empty_plaintext_seals_and_opens) {
  struct seal_keys keys;
  keys_of(KEY_A, &keys);
  unsigned char sealed[64];
  size_t len = seal_of(&keys, "message", "", sealed);
  char back[8];
  cr_expect(opens(&keys, "message", sealed, len, back));
  cr_expect_str_eq(back, "");
}

/* A message has no clear part (NULL, 0), as fleet.c seals them. */
Test(seal_value, a_value_without_a_clear_part_seals_and_opens) {
  struct seal_keys keys;
  keys_of(KEY_A, &keys);
  unsigned char sealed[64], plain[64];
  size_t plain_len = 0;
  cr_assert(seal_value(&keys, "message", NULL, 0, "ready", 5, sealed));
  cr_assert(seal_open(&keys, "message", sealed, seal_sealed_len(0, 5), 0, plain, &plain_len));
  cr_expect_eq(plain_len, 5);
  cr_expect_eq(memcmp(plain, "ready", 5), 0);
}
