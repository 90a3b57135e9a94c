/* creds: the upstream credential, loaded, held and wiped.
 *
 * The static API key comes from $CREDENTIALS_DIRECTORY/flip-token (systemd's LoadCredential=) when
 * that file exists, else from [upstream] token_file. The file must be a regular file (not a
 * symlink) that neither group nor others may access, at most CREDS_MAX_TOKEN bytes, one line of
 * visible ASCII (one trailing newline is stripped). The key lives only in struct creds, is
 * registered with the logger as a secret to scrub, and is wiped with explicit_bzero. */
#ifndef FLIPCACHED_CREDS_H
#define FLIPCACHED_CREDS_H

#include <limits.h>
#include <stddef.h>

#define CREDS_MAX_TOKEN 4096
#define CREDS_SYSTEMD_NAME "flip-token"

struct creds {
  char authorization[CREDS_MAX_TOKEN + 32]; /* "Authorization: Bearer <key>", a curl header line */
  const char *token;                          /* points into authorization */
  size_t token_len;
  char source[PATH_MAX];                      /* where it was read from, for messages */
};

/* Reads a secret file into out (NUL-terminated), checking the rules above. Returns 0, or -1 with a
 * message in err that names the file and the problem, never the content. */
int creds_read_secret_file(const char *path, char *out, size_t out_cap, size_t *out_len, char *err,
                           size_t err_len);
/* Loads the key from the systemd credential or token_file into creds. 0 or -1 with err set. */
int creds_load(struct creds *creds, const char *token_file, char *err, size_t err_len);
/* Moves a loaded key from `from` into `to` (wiping what `to` held), keeping the logger's
 * registration pointing at the key's new place; `from` is left wiped. */
void creds_move(struct creds *to, struct creds *from);
/* Wipes the key and unregisters it from the logger. Accepts a zeroed struct. */
void creds_wipe(struct creds *creds);

#endif
