/* creds: the upstream credential, loaded, held and wiped. One of two kinds:
 *
 *  - the static API key, from $CREDENTIALS_DIRECTORY/flip-token (systemd's LoadCredential=) when
 *    that file exists, else from [upstream] token_file; `authorization` is the API's header,
 *    "Authorization: Bearer <key>";
 *  - the OAuth2 client (when [upstream] oauth_token_url is set): the client secret, from
 *    $CREDENTIALS_DIRECTORY/flip-client-secret or oauth_client_secret_file; `authorization` is
 *    the token endpoint's header, "Authorization: Basic base64(id:secret)" (RFC 6749 2.3.1). The
 *    access tokens it buys live in the upstream module.
 *
 * A secret file must be a regular file (not a symlink) that neither group nor others may access,
 * at least CREDS_MIN_SECRET and at most CREDS_MAX_TOKEN bytes, one line of visible ASCII (one
 * trailing newline is stripped).
 * The secret, and its base64 form, live only here, are registered with the logger as secrets to
 * scrub, and are wiped with explicit_bzero. */
#ifndef FLIPCACHED_CREDS_H
#define FLIPCACHED_CREDS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define CREDS_MAX_TOKEN 4096
#define CREDS_MIN_SECRET 8 /* shorter is no secret, and redacting it from logs would mangle them */
#define CREDS_SYSTEMD_NAME "flip-token"
#define CREDS_SYSTEMD_CLIENT_SECRET_NAME "flip-client-secret"
#define CREDS_SYSTEMD_CLIENT_KEY_NAME "flip-client-key"
/* The header line of a bearer token (the static key, or an OAuth access token): written once. */
#define CREDS_BEARER_PREFIX "Authorization: Bearer "
#define CREDS_AUTHORIZATION_MAX (2 * CREDS_MAX_TOKEN + 512) /* base64 of id:secret, and more */

struct config;

enum creds_kind { CREDS_STATIC_KEY, CREDS_OAUTH_CLIENT };

struct creds {
  enum creds_kind kind;
  char authorization[CREDS_AUTHORIZATION_MAX]; /* a curl header line, see above */
  const char *token;          /* into authorization: the key, or base64(id:secret) */
  size_t token_len;
  char secret[CREDS_MAX_TOKEN + 1]; /* the OAuth client secret itself (empty for a static key) */
  size_t secret_len;
  char source[PATH_MAX];      /* where it was read from, for messages */
  bool from_systemd;          /* source is in $CREDENTIALS_DIRECTORY: systemd's copy, which
                                 systemd 252 makes only when the service starts, so a new key
                                 takes a restart, not a reload */
  char copied_from[PATH_MAX]; /* with from_systemd: the file the configuration names, where the
                                 operator replaces the key (LoadCredential='s source) */
  char client_key_path[PATH_MAX]; /* mutual TLS ([upstream] client_key): its file, checked with
                                     the secret file rules ($CREDENTIALS_DIRECTORY/flip-client-key
                                     wins); empty without client_key */
};

/* Standard base64 (RFC 4648) of in[0..len) into out (NUL-terminated); returns the length, or 0
 * when out_cap is too small. */
size_t creds_base64(const unsigned char *in, size_t len, char *out, size_t out_cap);

/* Reads a file that follows a secret file's rules (regular, no symlink, private) whole into out
 * (NUL-terminated; at most out_cap - 1 bytes, else refused). 0, or -1 with err naming the file
 * and the problem, never the content; out is wiped on failure. */
int creds_read_private_file(const char *path, char *out, size_t out_cap, size_t *out_len,
                            char *err, size_t err_len);
/* Reads a secret file into out (NUL-terminated), checking the rules above. Returns 0, or -1 with a
 * message in err that names the file and the problem, never the content. */
int creds_read_secret_file(const char *path, char *out, size_t out_cap, size_t *out_len, char *err,
                           size_t err_len);
/* $CREDENTIALS_DIRECTORY/name (systemd's LoadCredential=) when that file exists, else fallback,
 * into path. 0, or -1 with err when neither gives a path. */
int creds_choose_path(const char *name, const char *fallback, char *path, size_t path_len,
                      char *err, size_t err_len);
/* Whether path follows a secret file's rules (regular, no symlink, private); 0 or -1 with err. */
int creds_check_private_file(const char *path, char *err, size_t err_len);
/* The mutual-TLS key's file into path ($CREDENTIALS_DIRECTORY/flip-client-key when present, else
 * [upstream] client_key; empty without one), checked with the secret rules; libcurl reads it at
 * each handshake. 0 or -1 with err. */
int creds_find_client_key(const struct config *cfg, char *path, size_t path_len, char *err,
                          size_t err_len);
/* Loads the credential the configuration asks for (see above) into creds, and finds the client
 * key's file when client_key is set. 0 or -1 with err set. */
int creds_load(struct creds *creds, const struct config *cfg, char *err, size_t err_len);
/* Moves a loaded key from `from` into `to` (wiping what `to` held), keeping the logger's
 * registration pointing at the key's new place; `from` is left wiped. */
void creds_move(struct creds *to, struct creds *from);
/* What an operator does to load a replaced key: "restart the service (systemctl restart
 * flipcached)" for systemd's copy, else "send SIGHUP (systemctl reload flipcached)". */
const char *creds_how_to_replace(const struct creds *creds);
/* With systemd's copy: true when the file the configuration names (its source) was changed
 * (written, replaced or chmod-ed: its ctime) after the copy was made, i.e. the key was replaced
 * and a reload cannot take it; also true when either cannot be examined (the operator is then
 * told how a new key is taken). */
bool creds_source_replaced(const struct creds *creds);
/* Wipes the key and unregisters it from the logger. Accepts a zeroed struct. */
void creds_wipe(struct creds *creds);

#endif
