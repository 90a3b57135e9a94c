#include "access.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "peer.h"

struct member_search {
  access_member_fn found;
  void *found_arg;
};

/* Reports each user the group's entry lists; the names are resolved while the buffer lives. */
static int report_group_members(const void *gid, char *buffer, size_t size, void *search_arg) {
  const struct member_search *search = search_arg;
  struct group entry, *group = NULL;
  int rc = getgrgid_r(*(const uint32_t *)gid, &entry, buffer, size, &group);
  if (rc != 0 || !group)
    return rc ? rc : ENOENT;
  for (char **member = group->gr_mem; *member; member++) {
    uint32_t uid;
    if (access_resolve_user(*member, &uid, NULL))
      search->found(uid, *(const uint32_t *)gid, search->found_arg);
  }
  return 0;
}

void access_each_member_nss(const uint32_t *gids, size_t gid_count, access_member_fn found,
                            void *found_arg, void *arg) {
  (void)arg;
  if (gid_count == 0)
    return;
  /* Primary groups: only an enumeration finds them. Directory services that do not enumerate
   * (sssd's default) list their users' primary groups only through the member lists below. */
  setpwent();
  for (struct passwd *user = getpwent(); user; user = getpwent())
    for (size_t i = 0; i < gid_count; i++)
      if (user->pw_gid == gids[i])
        found(user->pw_uid, gids[i], found_arg);
  endpwent();
  struct member_search search = {.found = found, .found_arg = found_arg};
  for (size_t i = 0; i < gid_count; i++)
    access_nss_with_buffer(report_group_members, &gids[i], &search);
}

/* ---- rights ---------------------------------------------------------------------------------- */

/* A member of a group, as the user database said at load. */
struct membership {
  uint32_t uid, gid;
};

struct access_policy {
  struct id_list allow_users, allow_groups, admin_users, admin_groups;
  struct membership *members; /* sorted by (uid, gid) */
  size_t member_count, member_cap;
  bool out_of_memory;
};

static void collect_member(uint32_t uid, uint32_t gid, void *arg) {
  struct access_policy *policy = arg;
  if (policy->member_count == policy->member_cap) {
    size_t cap = policy->member_cap ? policy->member_cap * 2 : 64;
    struct membership *grown = realloc(policy->members, cap * sizeof(*grown));
    if (!grown) {
      policy->out_of_memory = true;
      return;
    }
    policy->members = grown;
    policy->member_cap = cap;
  }
  policy->members[policy->member_count++] = (struct membership){.uid = uid, .gid = gid};
}

static int compare_membership(const void *a, const void *b) {
  const struct membership *x = a, *y = b;
  if (x->uid != y->uid)
    return x->uid < y->uid ? -1 : 1;
  return x->gid < y->gid ? -1 : x->gid > y->gid;
}

struct access_policy *access_policy_new(const struct access_lists *lists,
                                        access_each_member_fn each_member, void *arg) {
  struct access_policy *policy = calloc(1, sizeof(*policy));
  if (!policy)
    return NULL;
  policy->allow_users = *lists->allow_users;
  policy->allow_groups = *lists->allow_groups;
  policy->admin_users = *lists->admin_users;
  policy->admin_groups = *lists->admin_groups;
  uint32_t gids[2 * ACCESS_MAX_IDS];
  size_t gid_count = 0;
  for (unsigned i = 0; i < policy->allow_groups.count; i++)
    gids[gid_count++] = policy->allow_groups.ids[i];
  for (unsigned i = 0; i < policy->admin_groups.count; i++)
    gids[gid_count++] = policy->admin_groups.ids[i];
  each_member(gids, gid_count, collect_member, policy, arg);
  if (policy->out_of_memory) {
    access_policy_free(policy);
    return NULL;
  }
  if (policy->members)
    qsort(policy->members, policy->member_count, sizeof(*policy->members), compare_membership);
  return policy;
}

void access_policy_free(struct access_policy *policy) {
  if (!policy)
    return;
  free(policy->members);
  free(policy);
}

static bool has_id(const struct id_list *list, uint32_t id) {
  for (unsigned i = 0; i < list->count; i++)
    if (list->ids[i] == id)
      return true;
  return false;
}

static bool listed_member(const struct access_policy *policy, uint32_t uid, uint32_t gid) {
  struct membership key = {.uid = uid, .gid = gid};
  return bsearch(&key, policy->members, policy->member_count, sizeof(key), compare_membership);
}

static bool in_groups(const struct access_policy *policy, const struct id_list *groups,
                      const struct peer *peer) {
  for (unsigned i = 0; i < groups->count; i++) {
    uint32_t gid = groups->ids[i];
    if (policy->member_count && listed_member(policy, peer->uid, gid))
      return true;
    if (!peer->groups_known)
      continue;
    if (peer->gid == gid)
      return true;
    for (unsigned g = 0; g < peer->group_count; g++)
      if (peer->groups[g] == gid)
        return true;
  }
  return false;
}

static bool admitted(const struct access_policy *policy, const struct id_list *users,
                     const struct id_list *groups, const struct peer *peer) {
  if (users->any || groups->any)
    return true;
  if (!peer->uid_known)
    return false;
  return has_id(users, peer->uid) || in_groups(policy, groups, peer);
}

unsigned access_rights(const struct access_policy *policy, const struct peer *peer) {
  /* A peer whose uid is not proven (peer.h) is never an admin, whatever the lists say: "*" in
   * them admits it to the enrollment route only. */
  if (!peer->uid_known)
    return admitted(policy, &policy->admin_users, &policy->admin_groups, peer) ||
                   admitted(policy, &policy->allow_users, &policy->allow_groups, peer)
               ? ACCESS_USE
               : 0;
  if (admitted(policy, &policy->admin_users, &policy->admin_groups, peer))
    return ACCESS_USE | ACCESS_ADMIN;
  if (admitted(policy, &policy->allow_users, &policy->allow_groups, peer))
    return ACCESS_USE;
  return 0;
}

/* ---- web pages ------------------------------------------------------------------------------- */

/* A dotted-quad IPv4 literal in 127.0.0.0/8, read by hand: it is on every request's path, and
 * inet_pton alone cost more than the rest of a hit's access checks. */
static bool is_loopback_v4(const char *text, size_t len) {
  unsigned octets = 0, value = 0, digits = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || text[i] == '.') {
      if (digits == 0 || value > 255 || (octets == 0 && value != 127))
        return false;
      octets++;
      value = digits = 0;
    } else if (text[i] >= '0' && text[i] <= '9' && digits < 3) {
      value = value * 10 + (unsigned)(text[i] - '0');
      digits++;
    } else {
      return false;
    }
  }
  return octets == 4;
}

static bool is_loopback_literal(const char *host, size_t len) {
  char text[64];
  if (len >= sizeof(text))
    return false;
  if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
    memcpy(text, host + 1, len - 2);
    text[len - 2] = '\0';
    struct in6_addr v6;
    if (inet_pton(AF_INET6, text, &v6) != 1)
      return false;
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return is_loopback_v4(host, len);
}

static bool in_names(const struct name_list *names, const char *text, size_t len) {
  for (unsigned i = 0; i < names->count; i++)
    if (strlen(names->names[i]) == len && strncasecmp(names->names[i], text, len) == 0)
      return true;
  return false;
}

/* Host: uri-host [":" port]. An absent Host (HTTP/1.0 only: the parser refuses a 1.1 request
 * without one) is no browser's. Every request comes here: the two Hosts clients send (127.0.0.1
 * and localhost, as curl and libraries write them) are matched before anything dearer. */
static bool host_accepted(const struct name_list *host_names, const char *host, size_t len) {
  if (!host)
    return true;
  size_t name_len;
  if (!access_split_host_port(host, len, &name_len))
    return false;
  if (name_len == 9 && (memcmp(host, "127.0.0.1", 9) == 0 || memcmp(host, "localhost", 9) == 0 ||
                        strncasecmp(host, "localhost", 9) == 0))
    return true;
  return name_len > 0 &&
         (is_loopback_literal(host, name_len) || in_names(host_names, host, name_len));
}

enum access_web_verdict access_check_web(const struct name_list *host_names,
                                         const struct name_list *allow_origins,
                                         const struct http1_request *request, bool *listed_origin) {
  *listed_origin = false;
  /* An absolute-form target's authority is in request->host (http1.h): judged as Host is. */
  if (request->https || !host_accepted(host_names, request->host, request->host_len))
    return ACCESS_WEB_MISDIRECTED;
  if (request->origin_count > 0) {
    if (request->origin_count > 1 ||
        !in_names(allow_origins, request->origin, request->origin_len))
      return ACCESS_WEB_FOREIGN_ORIGIN;
    *listed_origin = true;
    return ACCESS_WEB_OK; /* a listed page's fetch() says same-site or cross-site: both pass */
  }
  if (request->fetch_site_count > 1 ||
      (request->fetch_site_count == 1 &&
       !(request->fetch_site_len == 4 && strncasecmp(request->fetch_site, "none", 4) == 0)))
    return ACCESS_WEB_CROSS_SITE;
  return ACCESS_WEB_OK;
}
