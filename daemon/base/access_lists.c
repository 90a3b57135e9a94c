/* access_lists: the access keys' values and their parsers (access_lists.h). */
#include "access_lists.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parsing the lists ----------------------------------------------------------------------- */

#define LIST_TEXT_MAX 4096

/* Splits text on spaces and tabs into a copy; calls item() for each; stops at the first problem. */
static const char *each_item(const char *text, const char *(*item)(const char *word, void *arg),
                             void *arg, char *problem, size_t problem_len) {
  char copy[LIST_TEXT_MAX];
  if (strlen(text) >= sizeof(copy)) {
    snprintf(problem, problem_len, "the list is longer than %zu characters", sizeof(copy) - 1);
    return problem;
  }
  strcpy(copy, text);
  char *saveptr = NULL;
  for (char *word = strtok_r(copy, " \t", &saveptr); word; word = strtok_r(NULL, " \t", &saveptr)) {
    const char *why = item(word, arg);
    if (why) {
      snprintf(problem, problem_len, "'%.64s' %s", word, why);
      return problem;
    }
  }
  return NULL;
}

static bool is_decimal(const char *text) {
  if (!*text)
    return false;
  for (const char *p = text; *p; p++)
    if (!isdigit((unsigned char)*p))
      return false;
  return true;
}

/* The portable user and group name characters (POSIX 3.437, and Debian's adduser default): no
 * character that could be a typo'd separator or a glob. */
static bool is_account_name(const char *text) {
  if (!*text || *text == '-' || strlen(text) > 64)
    return false;
  for (const char *p = text; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.' &&
        !(*p == '$' && p[1] == '\0'))
      return false;
  return true;
}

struct ids_state {
  struct id_list *out;
  access_resolve_fn resolve;
  void *resolve_arg;
};

static const char *add_id(const char *word, void *arg) {
  struct ids_state *state = arg;
  struct id_list *out = state->out;
  if (strcmp(word, "*") == 0) {
    out->any = true;
    return NULL;
  }
  uint32_t id;
  if (is_decimal(word)) {
    errno = 0;
    unsigned long long number = strtoull(word, NULL, 10);
    if (errno || number >= UINT32_MAX) /* (uid_t)-1 is "no id" to the kernel */
      return "is not a valid id";
    id = (uint32_t)number;
  } else if (!is_account_name(word)) {
    return "is not a user or group name, an id or *";
  } else if (!state->resolve(word, &id, state->resolve_arg)) {
    return "does not exist";
  }
  for (unsigned i = 0; i < out->count; i++)
    if (out->ids[i] == id)
      return NULL;
  if (out->count == ACCESS_MAX_IDS)
    return "is one more than the list's limit of 64";
  out->ids[out->count++] = id;
  return NULL;
}

const char *access_parse_ids(const char *text, access_resolve_fn resolve, void *resolve_arg,
                             struct id_list *out, char *problem, size_t problem_len) {
  memset(out, 0, sizeof(*out));
  struct ids_state state = {.out = out, .resolve = resolve, .resolve_arg = resolve_arg};
  return each_item(text, add_id, &state, problem, problem_len);
}

static bool add_name(struct name_list *out, const char *text, size_t len) {
  if (out->count == ACCESS_MAX_NAMES || len >= ACCESS_NAME_MAX)
    return false;
  for (size_t i = 0; i < len; i++)
    out->names[out->count][i] = (char)tolower((unsigned char)text[i]);
  out->names[out->count][len] = '\0';
  for (unsigned i = 0; i < out->count; i++)
    if (strcmp(out->names[i], out->names[out->count]) == 0)
      return true; /* said twice: kept once */
  out->count++;
  return true;
}

/* A DNS name or an IPv4 literal (letters, digits, '-' and '.'), or an IPv6 literal in brackets. */
static bool is_host(const char *text, size_t len) {
  if (len == 0 || len > 253)
    return false;
  if (text[0] == '[') {
    char inside[64];
    struct in6_addr v6;
    if (len < 3 || text[len - 1] != ']' || len - 2 >= sizeof(inside))
      return false;
    memcpy(inside, text + 1, len - 2);
    inside[len - 2] = '\0';
    return inet_pton(AF_INET6, inside, &v6) == 1;
  }
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)text[i]) && text[i] != '-' && text[i] != '.')
      return false;
  return text[0] != '-' && text[0] != '.';
}

/* Splits "host[:port]" (the host may be a bracketed IPv6 literal) at its port: *name_len is the
 * host's length. False when the port is not 1 to 5 digits, or a bracket is not closed. */
bool access_split_host_port(const char *text, size_t len, size_t *name_len) {
  const char *after_name = len && text[0] == '[' ? memchr(text, ']', len) : text;
  if (!after_name)
    return false;
  const char *colon = memchr(after_name, ':', len - (size_t)(after_name - text));
  *name_len = colon ? (size_t)(colon - text) : len;
  if (!colon)
    return true;
  size_t digits = len - *name_len - 1;
  if (digits == 0 || digits > 5)
    return false;
  for (size_t i = 1; i <= digits; i++)
    if (colon[i] < '0' || colon[i] > '9')
      return false;
  return true;
}

static const char *parse_names(const char *text, const char *(*add)(const char *word, void *arg),
                               struct name_list *out, char *problem, size_t problem_len) {
  memset(out, 0, sizeof(*out));
  return each_item(text, add, out, problem, problem_len);
}

static const char *add_host(const char *word, void *arg) {
  if (!is_host(word, strlen(word)))
    return "is not a host name or address literal (no port, no scheme)";
  return add_name(arg, word, strlen(word)) ? NULL : "is one more than the list's limit of 16";
}

const char *access_parse_hosts(const char *text, struct name_list *out, char *problem,
                               size_t problem_len) {
  return parse_names(text, add_host, out, problem, problem_len);
}

/* An origin as browsers send it (RFC 6454 7): scheme "://" host [":" port], nothing after. */
static bool is_origin(const char *text, size_t len) {
  size_t scheme = len > 7 && strncasecmp(text, "http://", 7) == 0    ? 7
                  : len > 8 && strncasecmp(text, "https://", 8) == 0 ? 8
                                                                     : 0;
  size_t host_len;
  return scheme && access_split_host_port(text + scheme, len - scheme, &host_len) &&
         is_host(text + scheme, host_len);
}

static const char *add_origin(const char *word, void *arg) {
  if (strcmp(word, "*") == 0 || strcasecmp(word, "null") == 0)
    return "would admit every web page (list the origins of trusted pages)";
  if (!is_origin(word, strlen(word)))
    return "is not an origin (http:// or https://, a host, an optional port, no path)";
  return add_name(arg, word, strlen(word)) ? NULL : "is one more than the list's limit of 16";
}

const char *access_parse_origins(const char *text, struct name_list *out, char *problem,
                                 size_t problem_len) {
  return parse_names(text, add_origin, out, problem, problem_len);
}

/* ---- the user database ----------------------------------------------------------------------- */

/* NSS lookups with a buffer that grows on ERANGE (LDAP groups can have thousands of members). */
#define NSS_BUFFER_START 4096
#define NSS_BUFFER_MAX (4u << 20)

/* One *_r lookup: fills what it found from the entry in buffer; returns the call's error. */
/* Runs lookup with a buffer that grows until the entry fits; its return value (0 with the
 * result filled, or an error; ENOENT when there is no such entry). */
int access_nss_with_buffer(nss_lookup_fn lookup, const void *key, void *result) {
  for (size_t size = NSS_BUFFER_START; size <= NSS_BUFFER_MAX; size *= 2) {
    char *buffer = malloc(size);
    if (!buffer)
      return ENOMEM;
    int rc = lookup(key, buffer, size, result);
    free(buffer);
    if (rc != ERANGE)
      return rc;
  }
  return ERANGE;
}

static int lookup_uid(const void *name, char *buffer, size_t size, void *uid) {
  struct passwd entry, *found = NULL;
  int rc = getpwnam_r(name, &entry, buffer, size, &found);
  if (rc == 0 && found)
    *(uint32_t *)uid = found->pw_uid;
  return rc ? rc : found ? 0 : ENOENT;
}

static int lookup_gid(const void *name, char *buffer, size_t size, void *gid) {
  struct group entry, *found = NULL;
  int rc = getgrnam_r(name, &entry, buffer, size, &found);
  if (rc == 0 && found)
    *(uint32_t *)gid = found->gr_gid;
  return rc ? rc : found ? 0 : ENOENT;
}

bool access_resolve_user(const char *name, uint32_t *id, void *arg) {
  (void)arg;
  return access_nss_with_buffer(lookup_uid, name, id) == 0;
}

bool access_resolve_group(const char *name, uint32_t *id, void *arg) {
  (void)arg;
  return access_nss_with_buffer(lookup_gid, name, id) == 0;
}
