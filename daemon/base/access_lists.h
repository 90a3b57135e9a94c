/* access_lists: the values of the access keys ([server] allow_users, allow_groups, admin_users,
 * admin_groups as ids; host_names, allow_origins as names), their parsers, and the name service
 * lookups they need. The configuration parses them (config_values.c); the front end's access
 * rules use them (access.h). Everything but the resolvers is pure. */
#ifndef FLIPCACHED_ACCESS_LISTS_H
#define FLIPCACHED_ACCESS_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACCESS_MAX_IDS 64    /* users or groups in one list */
#define ACCESS_MAX_NAMES 16  /* host_names, allow_origins */
#define ACCESS_NAME_MAX 256

/* A list of users or groups as ids: `any` for "*", which also admits an unknown peer. */
struct id_list {
  bool any;
  unsigned count;
  uint32_t ids[ACCESS_MAX_IDS];
};

/* Host names or origins, lower case, as the configuration gave them. */
struct name_list {
  unsigned count;
  char names[ACCESS_MAX_NAMES][ACCESS_NAME_MAX];
};

/* Resolves a user or group name (or a decimal id, taken as it is) to its id; false when no such
 * user or group exists. arg is unused by the NSS resolvers. */
typedef bool (*access_resolve_fn)(const char *name, uint32_t *id, void *arg);
bool access_resolve_user(const char *name, uint32_t *id, void *arg);
bool access_resolve_group(const char *name, uint32_t *id, void *arg);

/* Parses a space-separated list of names, decimal ids and "*". Returns NULL on success, else
 * what is wrong, naming the item. */
const char *access_parse_ids(const char *text, access_resolve_fn resolve, void *resolve_arg,
                             struct id_list *out, char *problem, size_t problem_len);
/* host_names: host names or address literals, without a port. */
const char *access_parse_hosts(const char *text, struct name_list *out, char *problem,
                               size_t problem_len);
/* allow_origins: http:// or https:// origins (scheme, host, optional port; no path). */
const char *access_parse_origins(const char *text, struct name_list *out, char *problem,
                                 size_t problem_len);

/* host_names' "host[:port]" split: the host's length; false when the port is not digits. */
bool access_split_host_port(const char *text, size_t len, size_t *name_len);
/* One NSS lookup (getpwnam_r and the like) with a buffer that grows until the entry fits: its
 * return value (0 with the result filled, or an error; ENOENT when there is no such entry). */
typedef int (*nss_lookup_fn)(const void *key, char *buffer, size_t size, void *result);
int access_nss_with_buffer(nss_lookup_fn lookup, const void *key, void *result);

#endif
