/* oauth: the token client (oauth.h), over upstream.h's public requests. */
#include "oauth.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "creds.h"
#include "log.h"
#include "stats.h"
#include "upstream.h"
#include "validate.h"

#define OAUTH_RETRY_START_SECONDS 1   /* the token request could not even be started */
#define OAUTH_RETRY_FAILED_SECONDS 10 /* it failed while the current token still works */

struct oauth {
  struct upstream *upstream;
  const struct config *cfg;
  const struct creds *creds;
  struct stats *stats;
  bool valid;                     /* `authorization` holds a token believed good */
  char authorization[CREDS_MAX_TOKEN + 32]; /* "Authorization: Bearer <access token>" */
  char *token;                    /* into authorization; registered with the logger */
  unsigned generation;            /* grows with each token obtained */
  bool fetching;                  /* a token request is in flight */
  struct event *refresh_timer;    /* at 80% of expires_in, or a retry */
};

static void start_token_fetch(struct oauth *oauth);

static void retry_in(struct oauth *oauth, long seconds) {
  struct timeval again = {.tv_sec = seconds};
  evtimer_add(oauth->refresh_timer, &again);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  start_token_fetch(arg);
}

/* Replaces the access token (wiping the old one) and schedules its renewal. */
static void install_token(struct oauth *oauth, const char *token, long expires_in) {
  static const char PREFIX[] = CREDS_BEARER_PREFIX;
  if (oauth->token)
    log_remove_secret(oauth->token);
  explicit_bzero(oauth->authorization, sizeof(oauth->authorization));
  snprintf(oauth->authorization, sizeof(oauth->authorization), "%s%s", PREFIX, token);
  oauth->token = oauth->authorization + sizeof(PREFIX) - 1;
  log_add_secret(oauth->token, strlen(oauth->token));
  oauth->valid = true;
  oauth->generation++;
  oauth->stats->token_refreshes++;
  /* Renewed at 80% of the lifetime, so that a token never expires in use. */
  long refresh_ms = expires_in * 800;
  struct timeval tv = clock_timeval_of_ms(refresh_ms);
  evtimer_add(oauth->refresh_timer, &tv);
  log_info("upstream: OAuth access token obtained; valid for %ld s, renewed in %ld ms", expires_in,
           refresh_ms);
}

/* The token request's result: the token installed and the fetches waiting for one sent, or a
 * failure logged and the waiting fetches sent with the token still held, or failed. */
static void on_token(const struct upstream_result *result, void *arg) {
  struct oauth *oauth = arg;
  oauth->fetching = false;
  if (result->outcome == UPSTREAM_ABORTED)
    return; /* shutdown: the upstream is going */
  char token[CREDS_MAX_TOKEN + 1];
  long expires_in = 0;
  const char *problem = NULL;
  if (result->outcome != UPSTREAM_RESPONSE)
    problem = result->error_text;
  else if (result->http_status != 200)
    problem = "the token endpoint refused the request";
  else
    problem = validate_token_response(result->body, result->body_len, token, sizeof(token),
                                      &expires_in);
  if (!problem) {
    install_token(oauth, token, expires_in);
    explicit_bzero(token, sizeof(token));
  } else {
    oauth->stats->token_failures++;
    log_error("upstream: OAuth token request to %s failed (HTTP %ld): %s",
              oauth->cfg->oauth_token_url, result->http_status, problem);
    if (oauth->valid)
      retry_in(oauth, OAUTH_RETRY_FAILED_SECONDS); /* the current token still works */
  }
  upstream_auth_changed(oauth->upstream, oauth->valid, result->http_status);
}

/* Asks the token endpoint for an access token, unless a request is already out. */
static void start_token_fetch(struct oauth *oauth) {
  if (oauth->fetching)
    return;
  oauth->fetching = true;
  if (upstream_post_form(oauth->upstream, oauth->cfg->oauth_token_url,
                         oauth->creds->authorization, "grant_type=client_credentials", on_token,
                         oauth) == UPSTREAM_STARTED)
    return;
  oauth->fetching = false;
  log_error("upstream: could not start the OAuth token request; trying again in %d s",
            OAUTH_RETRY_START_SECONDS);
  retry_in(oauth, OAUTH_RETRY_START_SECONDS);
}

/* struct upstream_auth: the token to send, or NULL (one is being bought) while none is held. */
static const char *authorization(void *arg, unsigned *generation) {
  struct oauth *oauth = arg;
  if (!oauth->valid) {
    start_token_fetch(oauth);
    return NULL;
  }
  *generation = oauth->generation;
  return oauth->authorization;
}

/* struct upstream_auth: a 401 to the token of `generation`: dropped unless a newer one came
 * meanwhile; the fetch waits for the next one. */
static bool rejected(void *arg, unsigned generation) {
  struct oauth *oauth = arg;
  if (generation == oauth->generation && oauth->valid) {
    oauth->valid = false;
    log_warning("upstream: the API refused the OAuth access token (401); requesting a new one");
  }
  return true;
}

struct oauth *oauth_new(struct event_base *base, struct upstream *upstream,
                        const struct config *cfg, const struct creds *creds, struct stats *stats,
                        char *err, size_t err_len) {
  struct oauth *oauth = calloc(1, sizeof(*oauth));
  if (oauth)
    oauth->refresh_timer = evtimer_new(base, on_refresh, oauth);
  if (!oauth || !oauth->refresh_timer) {
    free(oauth);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  oauth->upstream = upstream;
  oauth->cfg = cfg;
  oauth->creds = creds;
  oauth->stats = stats;
  upstream_set_auth(upstream, &(struct upstream_auth){.authorization = authorization,
                                                       .rejected = rejected, .arg = oauth});
  start_token_fetch(oauth); /* a failure is logged and retried by the first fetch */
  return oauth;
}

void oauth_free(struct oauth *oauth) {
  if (!oauth)
    return;
  event_free(oauth->refresh_timer);
  if (oauth->token)
    log_remove_secret(oauth->token);
  explicit_bzero(oauth->authorization, sizeof(oauth->authorization));
  free(oauth);
}
