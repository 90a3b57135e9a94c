/* oauth: the OAuth2 client-credentials token client (RFC 6749 4.4), for [upstream]
 * oauth_token_url. It buys access tokens from the token endpoint through the upstream module's
 * public request (upstream_post_form: the same loop and multi handle, outside the fetch slots and
 * the breaker), keeps the current one in memory only (registered with the logger as a secret),
 * renews it at 80% of its lifetime, and is the upstream's credential (struct upstream_auth): a
 * fetch finds no token while it has none and waits, and an API 401 drops the token it was sent
 * with and buys one more, once per fetch. It uses upstream.h only. */
#ifndef FLIPCACHED_OAUTH_H
#define FLIPCACHED_OAUTH_H

#include <stddef.h>

struct config;
struct creds;
struct event_base;
struct oauth;
struct stats;
struct upstream;

/* Registers itself as the upstream's credential and asks for the first token at once, so that
 * the first miss does not wait for it. cfg, creds (the client's Basic credential, which a
 * reload may replace in place), stats and upstream must outlive it. NULL with err set. */
struct oauth *oauth_new(struct event_base *base, struct upstream *upstream,
                        const struct config *cfg, const struct creds *creds, struct stats *stats,
                        char *err, size_t err_len);
/* After upstream_free (which aborts its token request): wipes the token and frees. Accepts
 * NULL. */
void oauth_free(struct oauth *oauth);

#endif
