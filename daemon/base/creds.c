#include "creds.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Opens a file that holds a secret: a regular file, not a symbolic link, that neither group nor
 * others may access. Returns the descriptor (and its stat), or -1 with err naming the problem. */
static int open_private_file(const char *path, struct stat *st, char *err, size_t err_len) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, err_len, "%s: cannot open: %s", path,
             errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    return -1;
  }
  const char *problem = NULL;
  if (fstat(fd, st) != 0)
    problem = strerror(errno);
  else if (!S_ISREG(st->st_mode))
    problem = "not a regular file";
  else if (st->st_mode & (S_IRWXG | S_IRWXO))
    problem = "lets group or others access it; run chmod 600 on it";
  if (problem) {
    snprintf(err, err_len, "%s: mode %04o: %s", path, (unsigned)(st->st_mode & 07777), problem);
    close(fd);
    return -1;
  }
  return fd;
}

int creds_check_private_file(const char *path, char *err, size_t err_len) {
  struct stat st;
  int fd = open_private_file(path, &st, err, err_len);
  if (fd < 0)
    return -1;
  close(fd);
  return 0;
}

int creds_read_private_file(const char *path, char *out, size_t out_cap, size_t *out_len,
                            char *err, size_t err_len) {
  int rc = -1;
  ssize_t total = 0;
  struct stat st;
  int fd = open_private_file(path, &st, err, err_len);
  if (fd < 0)
    return -1;
  if (st.st_size <= 0 || (size_t)st.st_size >= out_cap) {
    snprintf(err, err_len, "%s: size %lld is not between 1 and %zu bytes", path,
             (long long)st.st_size, out_cap - 1);
    goto out;
  }
  while ((size_t)total < out_cap - 1) {
    ssize_t n = read(fd, out + total, out_cap - 1 - (size_t)total);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    total += n;
  }
  out[total] = '\0';
  *out_len = (size_t)total;
  rc = 0;
out:
  if (rc != 0)
    explicit_bzero(out, out_cap);
  close(fd);
  return rc;
}

int creds_read_secret_file(const char *path, char *out, size_t out_cap, size_t *out_len, char *err,
                           size_t err_len) {
  size_t total = 0;
  if (creds_read_private_file(path, out, out_cap, &total, err, err_len) != 0)
    return -1;
  int rc = -1;
  size_t len = total;
  if (len > 0 && out[len - 1] == '\n')
    len--;
  if (len > 0 && out[len - 1] == '\r')
    len--;
  out[len] = '\0';
  if (len == 0) {
    snprintf(err, err_len, "%s: empty", path);
    goto out;
  }
  /* One line of visible ASCII: anything else could split or forge the header it is sent in. */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)out[i];
    if (c <= ' ' || c >= 0x7f) {
      snprintf(err, err_len,
               "%s: holds a space, control or non-ASCII character (byte %zu); a key is one line "
               "of visible ASCII", path, i + 1);
      goto out;
    }
  }
  if (len < CREDS_MIN_SECRET) {
    snprintf(err, err_len, "%s: holds %zu characters; a key or secret has at least %d", path, len,
             CREDS_MIN_SECRET);
    goto out;
  }
  *out_len = len;
  rc = 0;
out:
  if (rc != 0)
    explicit_bzero(out, out_cap);
  return rc;
}

size_t creds_base64(const unsigned char *in, size_t len, char *out, size_t out_cap) {
  static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t needed = (len + 2) / 3 * 4;
  if (out_cap < needed + 1)
    return 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t group = (uint32_t)in[i] << 16;
    if (i + 1 < len)
      group |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len)
      group |= in[i + 2];
    out[o++] = ALPHABET[(group >> 18) & 63];
    out[o++] = ALPHABET[(group >> 12) & 63];
    out[o++] = i + 1 < len ? ALPHABET[(group >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? ALPHABET[group & 63] : '=';
  }
  out[o] = '\0';
  return o;
}

int creds_choose_path(const char *name, const char *fallback, char *path, size_t path_len,
                      char *err, size_t err_len) {
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  int n = -1;
  if (dir && dir[0])
    n = snprintf(path, path_len, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= path_len || access(path, F_OK) != 0)
    n = snprintf(path, path_len, "%s", fallback);
  if (n <= 0 || (size_t)n >= path_len) {
    snprintf(err, err_len, "no file for the credential %s: set the key naming it", name);
    return -1;
  }
  return 0;
}

static bool in_credentials_directory(const char *path) {
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  size_t len = dir ? strlen(dir) : 0;
  return len > 0 && strncmp(path, dir, len) == 0 && path[len] == '/';
}

bool creds_source_replaced(const struct creds *creds) {
  if (!creds->from_systemd)
    return false;
  struct stat copy, source;
  if (!creds->copied_from[0] || stat(creds->source, &copy) != 0 ||
      stat(creds->copied_from, &source) != 0)
    return true; /* cannot tell: say how a new key is taken */
  /* The change time, not the modification time: `cp -p` or `touch -d` can set the latter to
   * before the copy, but any write, rename or chmod of the source moves the former to now. */
  return source.st_ctim.tv_sec > copy.st_ctim.tv_sec ||
         (source.st_ctim.tv_sec == copy.st_ctim.tv_sec &&
          source.st_ctim.tv_nsec > copy.st_ctim.tv_nsec);
}

const char *creds_how_to_replace(const struct creds *creds) {
  return creds->from_systemd ? "restart the service (systemctl restart flipcached: systemd copies "
                               "the credential only at start)"
                             : "send SIGHUP (systemctl reload flipcached)";
}

/* Puts "<prefix><value>" into creds->authorization (wiping what it held) and registers the value
 * with the logger as a secret. */
static void set_authorization(struct creds *creds, enum creds_kind kind, const char *prefix,
                              const char *value, size_t value_len, const char *source) {
  size_t prefix_len = strlen(prefix);
  creds_wipe(creds);
  creds->kind = kind;
  memcpy(creds->authorization, prefix, prefix_len);
  memcpy(creds->authorization + prefix_len, value, value_len);
  creds->authorization[prefix_len + value_len] = '\0';
  creds->token = creds->authorization + prefix_len;
  creds->token_len = value_len;
  snprintf(creds->source, sizeof(creds->source), "%s", source);
  log_add_secret(creds->token, creds->token_len);
}

static int load_static_key(struct creds *creds, const struct config *cfg, char *err,
                           size_t err_len) {
  char path[PATH_MAX], key[CREDS_MAX_TOKEN + 1];
  size_t key_len = 0;
  if (creds_choose_path(CREDS_SYSTEMD_NAME, cfg->token_file, path, sizeof(path), err,
                        err_len) != 0 ||
      creds_read_secret_file(path, key, sizeof(key), &key_len, err, err_len) != 0)
    return -1;
  set_authorization(creds, CREDS_STATIC_KEY, CREDS_BEARER_PREFIX, key, key_len, path);
  explicit_bzero(key, sizeof(key));
  creds->from_systemd = in_credentials_directory(path);
  snprintf(creds->copied_from, sizeof(creds->copied_from), "%s", cfg->token_file);
  return 0;
}

static int load_oauth_client(struct creds *creds, const struct config *cfg, char *err,
                             size_t err_len) {
  static const char PREFIX[] = "Authorization: Basic ";
  char path[PATH_MAX], secret[CREDS_MAX_TOKEN + 1];
  size_t secret_len = 0;
  if (creds_choose_path(CREDS_SYSTEMD_CLIENT_SECRET_NAME, cfg->oauth_client_secret_file, path,
                        sizeof(path), err, err_len) != 0 ||
      creds_read_secret_file(path, secret, sizeof(secret), &secret_len, err, err_len) != 0)
    return -1;
  /* RFC 6749 2.3.1: id and secret are form-urlencoded before the Basic encoding; both are
   * visible ASCII here, and only these characters need it. */
  char pair[2 * CREDS_MAX_TOKEN + 512];
  size_t used = 0;
  bool fits = true;
  const char *parts[] = {cfg->oauth_client_id, ":", secret};
  for (size_t p = 0; p < 3 && fits; p++) {
    for (const char *c = parts[p]; *c && fits; c++) {
      bool plain = p == 1 || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                   (*c >= '0' && *c <= '9') || strchr("-._~", *c);
      if (used + 4 >= sizeof(pair))
        fits = false;
      else if (plain)
        pair[used++] = *c;
      else
        used += (size_t)snprintf(pair + used, 4, "%%%02X", (unsigned char)*c);
    }
  }
  char encoded[CREDS_AUTHORIZATION_MAX];
  size_t encoded_len = fits ? creds_base64((const unsigned char *)pair, used, encoded,
                                           sizeof(encoded) - sizeof(PREFIX))
                            : 0;
  explicit_bzero(pair, sizeof(pair));
  if (encoded_len == 0) {
    explicit_bzero(secret, sizeof(secret));
    snprintf(err, err_len, "%s: the client id and secret are too long", path);
    return -1;
  }
  set_authorization(creds, CREDS_OAUTH_CLIENT, PREFIX, encoded, encoded_len, path);
  creds->from_systemd = in_credentials_directory(path);
  snprintf(creds->copied_from, sizeof(creds->copied_from), "%s", cfg->oauth_client_secret_file);
  explicit_bzero(encoded, sizeof(encoded));
  memcpy(creds->secret, secret, secret_len + 1);
  creds->secret_len = secret_len;
  explicit_bzero(secret, sizeof(secret));
  log_add_secret(creds->secret, creds->secret_len);
  return 0;
}

int creds_find_client_key(const struct config *cfg, char *path, size_t path_len, char *err,
                          size_t err_len) {
  path[0] = '\0';
  if (!cfg->client_key[0])
    return 0;
  return creds_choose_path(CREDS_SYSTEMD_CLIENT_KEY_NAME, cfg->client_key, path, path_len, err,
                           err_len) != 0 ||
                 creds_check_private_file(path, err, err_len) != 0
             ? -1
             : 0;
}

int creds_load(struct creds *creds, const struct config *cfg, char *err, size_t err_len) {
  int rc = cfg->oauth_token_url[0] ? load_oauth_client(creds, cfg, err, err_len)
                                   : load_static_key(creds, cfg, err, err_len);
  if (rc == 0 && creds_find_client_key(cfg, creds->client_key_path,
                                       sizeof(creds->client_key_path), err, err_len) != 0) {
    creds_wipe(creds);
    return -1;
  }
  return rc;
}

void creds_move(struct creds *to, struct creds *from) {
  creds_wipe(to);
  if (!from->token)
    return;
  size_t token_offset = (size_t)(from->token - from->authorization);
  log_remove_secret(from->token);
  log_remove_secret(from->secret);
  memcpy(to, from, sizeof(*to));
  to->token = to->authorization + token_offset;
  log_add_secret(to->token, to->token_len);
  log_add_secret(to->secret, to->secret_len);
  explicit_bzero(from, sizeof(*from));
}

void creds_wipe(struct creds *creds) {
  if (!creds)
    return;
  if (creds->token)
    log_remove_secret(creds->token);
  log_remove_secret(creds->secret);
  explicit_bzero(creds, sizeof(*creds));
}
