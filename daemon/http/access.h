/* access: who may use the daemon ([server] allow_users, allow_groups, admin_users,
 * admin_groups) and the rules that keep a web page out (Host, Origin, Sec-Fetch-Site).
 *
 *   peer (peer.h) + policy -> rights: ACCESS_USE (the enrollment route), ACCESS_ADMIN (/cache)
 *   request head           -> web verdict: served, 421 misdirected, or 403 forbidden
 *
 * Names are resolved to ids when the configuration is loaded (start, SIGHUP), never per
 * connection: a lookup may go to LDAP and block. The policy also holds, for each configured
 * group, the users the user database listed as members at that load (their primary group and
 * the group's member list), because a TCP peer comes with a uid only. A unix peer is a member
 * when the database says so or when its process holds the group (SO_PEERCRED, SO_PEERGROUPS).
 *
 * The lists' values and their parsers are access_lists.h (the configuration's). Everything but
 * access_each_member_nss is pure, for the unit tests. */
#ifndef FLIPCACHED_ACCESS_H
#define FLIPCACHED_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access_lists.h"

struct peer;
struct http1_request;

/* ---- rights ---------------------------------------------------------------------------------- */

enum {
  ACCESS_USE = 1,   /* GET/HEAD /v1/enrollments/{id} */
  ACCESS_ADMIN = 2, /* the /cache routes; an admin may also use the enrollment route */
};

struct access_lists {
  const struct id_list *allow_users, *allow_groups, *admin_users, *admin_groups;
};

/* Calls found(uid, gid) for each user that the user database makes a member of one of gids
 * (as its primary group, or in the group's member list). */
typedef void (*access_member_fn)(uint32_t uid, uint32_t gid, void *found_arg);
typedef void (*access_each_member_fn)(const uint32_t *gids, size_t gid_count,
                                      access_member_fn found, void *found_arg, void *arg);
/* The system's user database (getpwent for primary groups, getgrgid_r and getpwnam_r for member
 * lists). Blocks on NSS: call it only while loading the configuration. */
void access_each_member_nss(const uint32_t *gids, size_t gid_count, access_member_fn found,
                            void *found_arg, void *arg);

/* The lists, copied, and the group members the database lists now. NULL when out of memory. */
struct access_policy;
struct access_policy *access_policy_new(const struct access_lists *lists,
                                        access_each_member_fn each_member, void *arg);
void access_policy_free(struct access_policy *policy);
/* The rights of a peer: a bit set of ACCESS_USE and ACCESS_ADMIN. */
unsigned access_rights(const struct access_policy *policy, const struct peer *peer);

/* ---- web pages ------------------------------------------------------------------------------- */

enum access_web_verdict {
  ACCESS_WEB_OK,
  ACCESS_WEB_MISDIRECTED,    /* 421: Host is not localhost, a loopback literal or in host_names */
  ACCESS_WEB_FOREIGN_ORIGIN, /* 403: an Origin not in allow_origins (or more than one) */
  ACCESS_WEB_CROSS_SITE,     /* 403: no Origin, but Sec-Fetch-Site says a page sent it */
};

/* The Host (or an absolute-form target's authority; its https scheme is misdirected: this
 * server speaks plain HTTP), Origin and Sec-Fetch-Site rules. *listed_origin is set when the request carries an
 * Origin of allow_origins: its answer then says Access-Control-Allow-Origin. */
enum access_web_verdict access_check_web(const struct name_list *host_names,
                                         const struct name_list *allow_origins,
                                         const struct http1_request *request, bool *listed_origin);

#endif
