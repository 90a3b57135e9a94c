/* sentinel: Redis Sentinel's answers, read (sentinel.h). */
#include "sentinel.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sentinel_parse_address(const char *host, size_t host_len, const char *port, size_t port_len,
                            struct listen_addr *out) {
  char host_text[sizeof(out->host)], port_text[8];
  if (host_len == 0 || host_len >= sizeof(host_text) || port_len == 0 ||
      port_len >= sizeof(port_text))
    return false;
  memcpy(host_text, host, host_len);
  host_text[host_len] = '\0';
  memcpy(port_text, port, port_len);
  port_text[port_len] = '\0';
  if (strspn(port_text, "0123456789") != port_len)
    return false;
  long number = strtol(port_text, NULL, 10);
  unsigned char raw[16];
  bool v4 = inet_pton(AF_INET, host_text, raw) == 1;
  bool v6 = !v4 && inet_pton(AF_INET6, host_text, raw) == 1;
  if (number < 1 || number > 65535 || (!v4 && !v6))
    return false;
  memset(out, 0, sizeof(*out));
  out->kind = LISTEN_TCP;
  strcpy(out->host, host_text);
  out->port = (uint16_t)number;
  out->loopback = v4 ? raw[0] == 127 : memcmp(raw, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
  return true;
}

bool sentinel_parse_switch(const char *payload, size_t len, const char *master_name,
                           struct listen_addr *out) {
  /* Five fields separated by one space each; nothing else. */
  const char *field[5];
  size_t field_len[5];
  size_t count = 0, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && payload[i] != ' ')
      continue;
    if (count == 5 || i == start)
      return false;
    field[count] = payload + start;
    field_len[count++] = i - start;
    start = i + 1;
  }
  if (count != 5 || field_len[0] != strlen(master_name) ||
      memcmp(field[0], master_name, field_len[0]) != 0)
    return false;
  return sentinel_parse_address(field[3], field_len[3], field[4], field_len[4], out);
}

bool sentinel_same_address(const struct listen_addr *a, const struct listen_addr *b) {
  if (a->kind != b->kind)
    return false;
  if (a->kind == LISTEN_UNIX)
    return strcmp(a->path, b->path) == 0;
  return a->port == b->port && strcmp(a->host, b->host) == 0;
}

void sentinel_format_address(const struct listen_addr *addr, char *out, size_t out_len) {
  if (addr->kind == LISTEN_UNIX)
    snprintf(out, out_len, "unix:%s", addr->path);
  else
    snprintf(out, out_len, strchr(addr->host, ':') ? "[%s]:%u" : "%s:%u", addr->host, addr->port);
}
