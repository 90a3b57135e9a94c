/* uuid: an enrollment id's text (uuid.h). */
#include "uuid.h"

bool uuid_canonicalize(const char *text, size_t len, char *out) {
  if (len != UUID_TEXT_LEN)
    return false;
  for (size_t i = 0; i < UUID_TEXT_LEN; i++) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-')
        return false;
      out[i] = c;
    } else if (c >= '0' && c <= '9') {
      out[i] = c;
    } else if (c >= 'a' && c <= 'f') {
      out[i] = c;
    } else if (c >= 'A' && c <= 'F') {
      out[i] = (char)(c - 'A' + 'a');
    } else {
      return false;
    }
  }
  out[UUID_TEXT_LEN] = '\0';
  return true;
}

uint32_t uuid_hash(const char *canonical_id) {
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < UUID_TEXT_LEN; i++)
    hash = (hash ^ (unsigned char)canonical_id[i]) * 16777619u;
  return hash;
}
