#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int creds_read_secret_file(const char *path, char *out, size_t out_cap, size_t *out_len, char *err,
                           size_t err_len) {
  int rc = -1;
  ssize_t total = 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, err_len, "%s: cannot open: %s", path,
             errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(err, err_len, "%s: cannot stat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, err_len, "%s: not a regular file", path);
    goto out;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    snprintf(err, err_len,
             "%s: mode %04o lets group or others access it; run chmod 600 on it", path,
             (unsigned)(st.st_mode & 07777));
    goto out;
  }
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
  size_t len = (size_t)total;
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
  *out_len = len;
  rc = 0;
out:
  if (rc != 0)
    explicit_bzero(out, out_cap);
  close(fd);
  return rc;
}

int creds_load(struct creds *creds, const char *token_file, char *err, size_t err_len) {
  char path[PATH_MAX];
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  int n = -1;
  if (dir && dir[0])
    n = snprintf(path, sizeof(path), "%s/%s", dir, CREDS_SYSTEMD_NAME);
  if (n < 0 || (size_t)n >= sizeof(path) || access(path, F_OK) != 0)
    n = snprintf(path, sizeof(path), "%s", token_file);
  if (n < 0 || (size_t)n >= sizeof(path)) {
    snprintf(err, err_len, "token_file: path too long");
    return -1;
  }

  static const char PREFIX[] = "Authorization: Bearer ";
  char key[CREDS_MAX_TOKEN + 1];
  size_t key_len = 0;
  if (creds_read_secret_file(path, key, sizeof(key), &key_len, err, err_len) != 0)
    return -1;
  creds_wipe(creds);
  memcpy(creds->authorization, PREFIX, sizeof(PREFIX) - 1);
  memcpy(creds->authorization + sizeof(PREFIX) - 1, key, key_len + 1);
  explicit_bzero(key, sizeof(key));
  creds->token = creds->authorization + sizeof(PREFIX) - 1;
  creds->token_len = key_len;
  snprintf(creds->source, sizeof(creds->source), "%s", path);
  log_add_secret(creds->token, creds->token_len);
  return 0;
}

void creds_move(struct creds *to, struct creds *from) {
  creds_wipe(to);
  if (!from->token)
    return;
  size_t token_offset = (size_t)(from->token - from->authorization);
  log_remove_secret(from->token);
  memcpy(to, from, sizeof(*to));
  to->token = to->authorization + token_offset;
  log_add_secret(to->token, to->token_len);
  explicit_bzero(from->authorization, sizeof(from->authorization));
  from->token = NULL;
  from->token_len = 0;
}

void creds_wipe(struct creds *creds) {
  if (!creds)
    return;
  if (creds->token)
    log_remove_secret(creds->token);
  explicit_bzero(creds->authorization, sizeof(creds->authorization));
  creds->token = NULL;
  creds->token_len = 0;
}
