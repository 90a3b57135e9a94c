/* config_internal: what config.c (the table of keys, reading the file through inih, the checks
 * across keys, reloads) and config_values.c (one parser a key type) share. No other module
 * includes it: the rest of the daemon sees config.h. */
#ifndef FLIPCACHED_CONFIG_INTERNAL_H
#define FLIPCACHED_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define CONFIG_KEY_MAX 128 /* keys in the table at most (config.c asserts it) */

enum key_type {
  KEY_BOOL,      /* yes/no, true/false, on/off, 1/0 */
  KEY_UINT,      /* whole number within [min, max] */
  KEY_SIZE,      /* bytes with an optional K, M or G suffix (powers of 1024), within [min, max] */
  KEY_STRING,    /* free text, may be empty */
  KEY_PATH,      /* a non-empty file system path */
  KEY_LISTEN,    /* space-separated listener addresses */
  KEY_BASE_URL,  /* the upstream's scheme://host[:port][/prefix] */
  KEY_URL_OR_EMPTY, /* empty, or a URL with the rules of KEY_BASE_URL */
  KEY_LOG_LEVEL, /* error, warning, info, debug */
  KEY_PATH_OR_EMPTY, /* empty, or an absolute file system path */
  KEY_SHARE,     /* a share from 0 to 1 with at most three decimals, kept in thousandths */
  KEY_PROXY,     /* empty, or http://, https:// or socks5h:// with a host and a port */
  KEY_USERS,     /* space-separated user names, uids or "*" (struct id_list) */
  KEY_GROUPS,    /* the same for groups */
  KEY_HOSTS,     /* space-separated host names or address literals (struct name_list) */
  KEY_ORIGINS,   /* space-separated http(s) origins (struct name_list) */
  KEY_GROUP_OR_EMPTY, /* one group name or gid, or empty (struct id_list of at most one) */
  KEY_PROGRAMS,  /* space-separated program ids (struct program_list) */
  KEY_REDIS,     /* empty, or one HOST:PORT (numeric), [V6]:PORT or unix:/PATH (also parsed into
                    shared_addr) */
  KEY_PREFIX,    /* 1 to 63 characters of letters, digits and ":._-{}" */
  KEY_SENTINELS, /* empty, or space-separated numeric HOST:PORT or [V6]:PORT (also parsed into
                    sentinels) */
  KEY_NAME_OR_EMPTY, /* empty, or KEY_PREFIX's characters */
};

struct config_key {
  const char *section;
  const char *name;
  enum key_type type;
  size_t offset; /* of the target field in struct config */
  size_t size;   /* of the target field, for strings */
  uint64_t min, max;
  const char *default_value;
  bool restart; /* SIGHUP cannot apply a change of this key: it needs a restart */
};

struct parse_state {
  struct config *cfg;
  struct config_errors *errors;
  const char *name;     /* the file's name, for messages */
  int lineno;           /* the line the reader handed to inih last */
  int key_line[CONFIG_KEY_MAX]; /* the line each key was set on (config.c checks KEY_COUNT fits) */
  /* the source: a FILE, or a string */
  FILE *file;
  const char *text;
};

/* An error naming the file and line (at most CONFIG_MAX_ERRORS are kept; all are counted). */
__attribute__((format(printf, 3, 4))) void config_add_error(struct parse_state *state, int line,
                                                            const char *fmt, ...);
/* Sets key's field in state->cfg from value, by the parser of its type, or adds an error. */
void config_set_value(struct parse_state *state, const struct config_key *key, const char *value,
                      int line);

#endif
