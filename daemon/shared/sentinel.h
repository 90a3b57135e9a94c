/* sentinel: what Redis Sentinel says, read (pure: no socket, no loop). redis.c asks the
 * sentinels ([shared] sentinels) where the master is and follows their "+switch-master"; these
 * are the answers' shapes and the checks placed on them.
 *
 * A sentinel is trusted to name the master, not to be right: whatever it names is a numeric
 * address or nothing (Sentinel's resolve-hostnames would need a name lookup on the loop, so a
 * name is refused), and redis.c's ROLE check on the named server decides whether it is the
 * master. A message of another monitored name, or of any other shape, is ignored. */
#ifndef FLIPCACHED_SENTINEL_H
#define FLIPCACHED_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The master's address from SENTINEL get-master-addr-by-name's two strings (not NUL-terminated)
 * into *out (TCP). false: not a numeric IPv4 or IPv6 address and a port from 1 to 65535. */
bool sentinel_parse_address(const char *host, size_t host_len, const char *port, size_t port_len,
                            struct listen_addr *out);

/* A "+switch-master" message, "NAME OLD-IP OLD-PORT NEW-IP NEW-PORT": true and *out the new
 * master when NAME is master_name and the new address parses as above; else false. */
bool sentinel_parse_switch(const char *payload, size_t len, const char *master_name,
                           struct listen_addr *out);

/* The same server: kind, host and port (or path). */
bool sentinel_same_address(const struct listen_addr *a, const struct listen_addr *b);

/* "127.0.0.1:6379", "[::1]:6379" or "unix:/PATH" into out (at least 80 bytes). */
void sentinel_format_address(const struct listen_addr *addr, char *out, size_t out_len);

#endif
