/* flip-fake-upstream: a stand-in for the Flip utility API, for the tests and the README's demo.
 *
 * Serves GET /v1/enrollments/{uuid} with a synthetic enrollment shaped like the reference page
 * (docs: ../shared/seed/get-enrollment.txt), after checking "Authorization: Bearer <token>" against
 * --token-file. It counts what it receives, and can be told how to misbehave, per id or for all:
 *
 *   POST /_fake/mode?id=<uuid|*>&mode=<ok|404|500|401|429|garbage|wrong-id|slow>&delay_ms=N
 *        (delay_ms holds back any answer; "slow" is "ok", named for readability;
 *         &fail_times=N, for one id: the mode answers N requests, then "ok")
 *   GET  /_fake/count?id=<uuid>   -> {"count": N}   enrollment requests received for that id
 *   GET  /_fake/stats             -> {"total", "auth_ok", "auth_bad", "cookie_seen", "forwarded_seen",
 *                                     "held", "held_most"} (held: answers delay_ms holds back now;
 *                                     held_most: the most at once, the requests in progress)
 *   POST /_fake/token?value=KEY   -> from now on expect "Authorization: Bearer KEY"
 *   POST /_fake/retry-after?seconds=N -> the Retry-After of a 429 (default 7)
 *   GET  /_fake/redirect-target   -> where "redirect" points; counted as redirect_target_hits
 * Modes beyond the obvious: 502, 503, "redirect" (302), "huge" (a 64 MiB body, streamed),
 * "trickle" (one byte every 100 ms), "reset" (the socket shut mid-body), "truncated-chunked",
 * "short-length" (a Content-Length shorter than the body), "garbage-status" (an unparsable
 * status line), "nested" (valid JSON nested 10,000 deep), "huge-json" (valid JSON of 5 MiB),
 * "hold" (no answer at all until released, then "ok"; counted in "held"):
 *   POST /_fake/release?id=<uuid>  -> the held requests for that id are answered
 *   POST /_fake/release?n=N        -> the N held longest are answered (n=0 or none: all)
 *        -> {"released": N}; /_fake/reset releases every held request too
 * /_fake/stats also counts distinct client connections.
 *   POST /_fake/oauth?expires_in=N -> the lifetime of access tokens issued from now on
 *   POST /_fake/oauth-revoke      -> every access token issued so far is refused from now on
 *   POST /_fake/oauth-trickle?on=1 -> /oauth/token answers one byte every 100 ms (on=0: no more)
 *   GET  /_fake/oauth-tokens      -> {"tokens": [...]} every access token issued
 *   POST /_fake/validators?send=<none|etag|last-modified|both|bad> -> what a 200 carries: an ETag
 *        ("v<version>-<id's first 8>"), a Last-Modified (the version's updated_at), both, or an
 *        ETag and a date that break their grammar ("bad"); a conditional GET of the current
 *        version is then answered 304 without a body (not with "bad"). Default none.
 *        /_fake/stats counts conditional_seen (GETs with If-None-Match or If-Modified-Since)
 *        and not_modified (304s sent).
 *   POST /_fake/reset             -> counts and modes back to zero and "ok"
 *
 * Versions, for bench/chaos: every id's enrollment is at version 0 (its "updated_at" is
 * 2019-08-24T14:15:22Z) until it is changed:
 *   POST /_fake/version?id=<uuid>  -> {"version": N}: the id's enrollment changes; version N's
 *                                     "updated_at" is 2030-01-01T00:00:00Z plus N seconds
 * With --serve-log FILE, each change and each enrollment answered 200 with its own id is a JSON
 * line there: {"kind":"version","id":ID,"version":N,"at":T} and {"kind":"served",...} (T: Unix
 * seconds, when the answer was sent).
 *
 * The list endpoint, GET /v1/enrollments?program_id=P (same credential check): {"enrollments":
 * [...]}, each element the same object as GET /v1/enrollments/{id} returns. A program lists
 * nothing until it is given enrollments:
 *   POST /_fake/program?id=P&count=N&prefix=HHHHHHHH&mode=M&delay_ms=D
 *        the ids are HHHHHHHH-0000-4000-8000-<i as 12 hex digits>, i from 0 to N - 1; modes:
 *        ok, 500, garbage (not JSON), not-object (a JSON array), bad-element (the middle
 *        element's id is not a UUID), huge (a valid list of 70 MB, past the daemon's limit)
 *   GET  /_fake/count?program_id=P -> {"count": N}   list requests received for P
 * List requests count in "total" and in "list_requests".
 *
 * With --client-id and --client-secret-file it is also an OAuth2 token endpoint:
 * POST /oauth/token (Basic client authentication, grant_type=client_credentials) issues access
 * tokens, which the enrollment route then accepts besides the static key.
 *
 * The control routes take no credential: the fake listens on loopback only. Prints
 * "listening on 127.0.0.1:PORT" on stdout once ready (--port 0 picks a free port). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/queue.h>

#define MAX_IDS 4096
#define ID_SLOTS (2 * MAX_IDS) /* a power of two, at most half full */
#define ID_LEN 36

enum mode {
  MODE_OK, MODE_404, MODE_500, MODE_401, MODE_429, MODE_GARBAGE, MODE_WRONG_ID, MODE_SLOW,
  MODE_502, MODE_503, MODE_REDIRECT, MODE_HUGE, MODE_TRICKLE,
  MODE_RESET, MODE_TRUNCATED_CHUNKED, MODE_SHORT_LENGTH, MODE_GARBAGE_STATUS, MODE_NESTED,
  MODE_HUGE_JSON, MODE_HOLD,
};
enum list_mode { LIST_OK, LIST_500, LIST_GARBAGE, LIST_NOT_OBJECT, LIST_BAD_ELEMENT, LIST_HUGE };
static const char *const LIST_MODE_NAMES[] = {"ok", "500", "garbage", "not-object", "bad-element",
                                              "huge"};
#define MAX_PROGRAMS 16
#define HUGE_LIST_COUNT 65000 /* about 70 MB: past the daemon's 64 MiB */

struct program_state {
  char id[65];
  char prefix[9];
  unsigned count;
  enum list_mode mode;
  unsigned delay_ms;
  unsigned long requests;
};

static const char *const MODE_NAMES[] = {
  "ok", "404", "500", "401", "429", "garbage", "wrong-id", "slow", "502", "503", "redirect",
  "huge", "trickle", "reset", "truncated-chunked", "short-length", "garbage-status", "nested",
  "huge-json", "hold"};

#define HUGE_BODY_BYTES (64u * 1024u * 1024u)
#define HUGE_CHUNK_BYTES (64u * 1024u)
#define MAX_PEERS 1024

struct id_state {
  char id[ID_LEN + 1];
  unsigned long count;
  bool has_mode;
  enum mode mode;
  unsigned delay_ms;
  unsigned fail_times;   /* > 0: the mode answers that many requests, then "ok" */
  unsigned version;      /* of its enrollment: 0 until /_fake/version changes it */
};

#define MAX_TOKENS 64

enum validators { VALIDATORS_NONE, VALIDATORS_ETAG, VALIDATORS_LAST_MODIFIED, VALIDATORS_BOTH,
                  VALIDATORS_BAD };
static const char *const VALIDATOR_NAMES[] = {"none", "etag", "last-modified", "both", "bad"};

static struct {
  struct event_base *base;
  char expected_authorization[4200];
  char expected_client_basic[8400];   /* "Basic base64(id:secret)", empty: no token endpoint */
  unsigned token_expires_in;          /* the expires_in of tokens issued */
  bool token_trickle;                 /* /oauth/token answers a byte every 100 ms */
  struct {
    char value[64];
    long long expires_at_ms;  /* CLOCK_MONOTONIC: whole seconds would make a 2 s token live 1 s */
    bool revoked;
  } tokens[MAX_TOKENS];               /* access tokens issued by /oauth/token */
  size_t token_count;
  unsigned long tokens_issued, token_requests_refused;
  struct id_state ids[MAX_IDS];
  struct program_state programs[MAX_PROGRAMS];
  size_t program_count;
  unsigned long list_requests;
  size_t id_count;
  /* Open addressing over ids[]: index + 1, 0 for an empty slot. A linear scan cost the bench's
   * cold-miss scenario more CPU than the rest of the fake together. */
  uint16_t id_slots[ID_SLOTS];
  enum mode default_mode;
  unsigned default_delay_ms;
  unsigned long total, auth_ok, auth_bad, cookie_seen, forwarded_seen, redirect_target_hits;
  unsigned long held, held_most; /* enrollment answers held back by delay_ms now, and at most */
  unsigned retry_after;          /* the Retry-After of a 429 */
  struct {
    char address[64];
    unsigned short port;
  } peers[MAX_PEERS];            /* distinct client connections seen (address, port) */
  size_t peer_count;
  FILE *serve_log;               /* --serve-log: versions changed and served, or NULL */
  enum validators validators;    /* what a 200 carries (/_fake/validators) */
  unsigned long conditional_seen, not_modified; /* conditional GETs received; 304s sent */
} fake;

static struct id_state *find_id(const char *id, bool create) {
  uint32_t hash = 2166136261u; /* FNV-1a */
  for (const char *c = id; *c; c++)
    hash = (hash ^ (unsigned char)*c) * 16777619u;
  size_t slot = hash & (ID_SLOTS - 1);
  while (fake.id_slots[slot]) {
    struct id_state *state = &fake.ids[fake.id_slots[slot] - 1];
    if (strcmp(state->id, id) == 0)
      return state;
    slot = (slot + 1) & (ID_SLOTS - 1);
  }
  if (!create || fake.id_count == MAX_IDS)
    return NULL;
  struct id_state *state = &fake.ids[fake.id_count++];
  memset(state, 0, sizeof(*state));
  snprintf(state->id, sizeof(state->id), "%s", id);
  fake.id_slots[slot] = (uint16_t)fake.id_count;
  return state;
}

static bool is_uuid(const char *text) {
  if (strlen(text) != ID_LEN)
    return false;
  for (int i = 0; i < ID_LEN; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (text[i] == '-'))
      return false;
    if (!dash && !strchr("0123456789abcdefABCDEF", text[i]))
      return false;
  }
  return true;
}

static void send_json(struct evhttp_request *req, int status, const char *body) {
  struct evbuffer *out = evbuffer_new();
  evbuffer_add(out, body, strlen(body));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, status, NULL, out);
  evbuffer_free(out);
}

static void send_error(struct evhttp_request *req, int status, const char *code, const char *msg) {
  char body[512];
  snprintf(body, sizeof(body),
           "{\"code\":\"%s\",\"detail\":[{\"loc\":[\"path\",\"id\"],\"msg\":\"%s\",\"type\":\"%s\"}],"
           "\"errors\":[{\"message\":\"%s\",\"path\":\"id\"}],\"message\":\"%s\",\"status_code\":%d}",
           code, msg, code, msg, msg, status);
  send_json(req, status, body);
}

/* The enrollment of that id at a version, as the reference page shapes it; returns its length.
 * Version 0's "updated_at" is the page's; version N's is 2030-01-01T00:00:00Z plus N seconds. */
static int format_enrollment(char *body, size_t size, const char *id, unsigned version) {
  char updated_at[32] = "2019-08-24T14:15:22Z";
  if (version) {
    time_t at = (time_t)1893456000 + (time_t)version; /* 2030-01-01T00:00:00Z */
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(updated_at, sizeof(updated_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  return snprintf(body, size,
           "{\"created_at\":\"2019-08-24T14:15:22Z\",\"devices\":[{\"attributes\":"
           "{\"battery_capacity_wh\":15000,\"battery_power_input_w\":6000,"
           "\"battery_power_output_w\":7500},\"configuration\":{\"reserve_percentage\":20},"
           "\"created_at\":\"2019-08-24T14:15:22Z\",\"id\":\"xyz-123\",\"install_date\":"
           "\"2022-02-22T00:00:00Z\",\"manufacturer_name\":\"DeviceMaker\",\"product_name\":"
           "\"Model 1\",\"serial_number\":\"123456789\",\"site_id\":\"abc-789\",\"type\":\"battery\","
           "\"updated_at\":\"2019-08-24T14:15:22Z\"}],\"enrolled_at\":\"2019-08-24T14:15:22Z\","
           "\"id\":\"%s\",\"program_specific_attributes\":[{\"name\":\"opt_in\",\"type\":"
           "\"boolean\",\"value\":\"true\"}],\"site\":{\"city\":\"San Francisco\",\"company_name\":"
           "\"ABC Co.\",\"created_at\":\"2019-08-24T14:15:22Z\",\"email\":\"john@example.com\","
           "\"first_name\":\"John\",\"groups\":[{\"id\":\"my-group\",\"name\":\"My Group\"}],"
           "\"id\":\"abc-789\",\"last_name\":\"Doe\",\"service_account_id\":\"sa-1\","
           "\"state_code\":\"CA\",\"street_address\":\"123 Main St\",\"street_address2\":\"\","
           "\"updated_at\":\"2019-08-24T14:15:22Z\",\"zip_code\":\"88800\"},\"status\":\"ACTIVE\","
           "\"status_reason\":\"\",\"unenrolled_at\":null,\"updated_at\":\"%s\"}",
           id, updated_at);
}

/* One line of --serve-log. */
static void log_version(const char *kind, const char *id, unsigned version) {
  if (!fake.serve_log)
    return;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  fprintf(fake.serve_log, "{\"kind\":\"%s\",\"id\":\"%s\",\"version\":%u,\"at\":%lld.%06ld}\n",
          kind, id, version, (long long)now.tv_sec, now.tv_nsec / 1000);
  fflush(fake.serve_log);
}

static unsigned version_of(const char *id) {
  struct id_state *state = find_id(id, false);
  return state ? state->version : 0;
}

/* The validators of `id` at `version` (/_fake/validators): ETag "v<version>-<id's first 8>",
 * Last-Modified the version's updated_at; or, with "bad", an ETag and a date of no grammar. */
static void add_validators(struct evkeyvalq *headers, const char *id, unsigned version) {
  char etag[64], date[64];
  if (fake.validators == VALIDATORS_BAD) {
    evhttp_add_header(headers, "ETag", "v1 unquoted");
    evhttp_add_header(headers, "Last-Modified", "yesterday");
    return;
  }
  snprintf(etag, sizeof(etag), "\"v%u-%.8s\"", version, id);
  time_t at = version ? (time_t)1893456000 + (time_t)version : (time_t)1566656122;
  struct tm tm;
  gmtime_r(&at, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (fake.validators == VALIDATORS_ETAG || fake.validators == VALIDATORS_BOTH)
    evhttp_add_header(headers, "ETag", etag);
  if (fake.validators == VALIDATORS_LAST_MODIFIED || fake.validators == VALIDATORS_BOTH)
    evhttp_add_header(headers, "Last-Modified", date);
}

/* A conditional GET of the id's current version: If-None-Match (weakly equal to its ETag)
 * first; If-Modified-Since (equal to its Last-Modified) only without it (RFC 9110 13.2.2). */
static bool not_modified(struct evhttp_request *req) {
  struct evkeyvalq *in = evhttp_request_get_input_headers(req), *out = evhttp_request_get_output_headers(req);
  const char *inm = evhttp_find_header(in, "If-None-Match");
  const char *ims = evhttp_find_header(in, "If-Modified-Since");
  if (inm || ims)
    fake.conditional_seen++;
  const char *etag = evhttp_find_header(out, "ETag");
  const char *date = evhttp_find_header(out, "Last-Modified");
  if (inm)
    return etag && strstr(inm, etag) != NULL;
  return ims && date && strcmp(ims, date) == 0;
}

/* The enrollment of `id` (answering for `asked`: another id's body is the wrong-id mode), or a
 * 304 to a conditional GET of its current version. */
static void send_enrollment(struct evhttp_request *req, const char *asked, const char *id) {
  char body[2048];
  unsigned version = version_of(id);
  if (fake.validators != VALIDATORS_NONE)
    add_validators(evhttp_request_get_output_headers(req), id, version);
  if (fake.validators != VALIDATORS_BAD && not_modified(req)) {
    fake.not_modified++;
    evhttp_send_reply(req, 304, "Not Modified", NULL);
    return;
  }
  format_enrollment(body, sizeof(body), id, version);
  send_json(req, 200, body);
  if (strcmp(asked, id) == 0)
    log_version("served", id, version);
}

static long long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Whether authorization is "Bearer <an issued, unexpired, unrevoked access token>". */
static bool issued_token_accepted(const char *authorization) {
  if (strncmp(authorization, "Bearer ", 7) != 0)
    return false;
  for (size_t i = 0; i < fake.token_count; i++) {
    if (strcmp(fake.tokens[i].value, authorization + 7) == 0)
      return !fake.tokens[i].revoked && now_ms() < fake.tokens[i].expires_at_ms;
  }
  return false;
}

static void base64(const unsigned char *in, size_t len, char *out) {
  static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    unsigned group = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
    out[o++] = ALPHABET[(group >> 18) & 63];
    out[o++] = ALPHABET[(group >> 12) & 63];
    out[o++] = i + 1 < len ? ALPHABET[(group >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? ALPHABET[group & 63] : '=';
  }
  out[o] = '\0';
}

static void send_stream(struct evhttp_request *req, size_t total, size_t chunk, bool trickle);

/* POST /oauth/token: RFC 6749 client credentials, the client authenticated with Basic. */
static void answer_token(struct evhttp_request *req) {
  struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
  const char *authorization = evhttp_find_header(headers, "Authorization");
  struct evbuffer *input = evhttp_request_get_input_buffer(req);
  char form[128] = "";
  evbuffer_copyout(input, form, sizeof(form) - 1);
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || !fake.expected_client_basic[0] ||
      !authorization || strcmp(authorization, fake.expected_client_basic) != 0 ||
      strcmp(form, "grant_type=client_credentials") != 0 || fake.token_count == MAX_TOKENS) {
    fake.token_requests_refused++;
    send_json(req, 401, "{\"error\":\"invalid_client\"}");
    return;
  }
  if (fake.token_trickle) {
    send_stream(req, 4096, 1, true);
    return;
  }
  unsigned random_part = (unsigned)rand();
  snprintf(fake.tokens[fake.token_count].value, sizeof(fake.tokens[0].value), "at_%lu_%08x",
           fake.tokens_issued + 1, random_part);
  fake.tokens[fake.token_count].expires_at_ms = now_ms() + 1000LL * fake.token_expires_in;
  fake.tokens[fake.token_count].revoked = false;
  char body[256];
  snprintf(body, sizeof(body),
           "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%u}",
           fake.tokens[fake.token_count].value, fake.token_expires_in);
  fake.token_count++;
  fake.tokens_issued++;
  send_json(req, 200, body);
}

/* A body streamed in chunks, each sent when the previous one is written: the fake never holds
 * more than a chunk, whatever the size. */
struct stream {
  struct evhttp_request *req;
  size_t left;        /* bytes still to send */
  size_t chunk;       /* bytes per chunk */
  struct event *timer; /* for a trickle: the pause between chunks */
};

static void stream_next(struct evhttp_connection *connection, void *arg);

static void on_trickle_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct stream *stream = arg;
  stream_next(NULL, stream);
}

static void stream_next(struct evhttp_connection *connection, void *arg) {
  (void)connection;
  struct stream *stream = arg;
  if (stream->left == 0) {
    evhttp_send_reply_end(stream->req);
    if (stream->timer)
      event_free(stream->timer);
    free(stream);
    return;
  }
  size_t len = stream->left < stream->chunk ? stream->left : stream->chunk;
  static char filler[HUGE_CHUNK_BYTES];
  memset(filler, 'x', len);
  struct evbuffer *out = evbuffer_new();
  evbuffer_add(out, filler, len);
  stream->left -= len;
  if (stream->timer) {
    evhttp_send_reply_chunk(stream->req, out);
    struct timeval pause = {.tv_usec = 100 * 1000};
    evtimer_add(stream->timer, &pause);
  } else {
    evhttp_send_reply_chunk_with_cb(stream->req, out, stream_next, stream);
  }
  evbuffer_free(out);
}

static void send_stream(struct evhttp_request *req, size_t total, size_t chunk, bool trickle) {
  struct stream *stream = calloc(1, sizeof(*stream));
  stream->req = req;
  stream->left = total;
  stream->chunk = chunk;
  if (trickle)
    stream->timer = evtimer_new(fake.base, on_trickle_timer, stream);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply_start(req, 200, "OK");
  stream_next(NULL, stream);
}

/* Writes `raw` straight to the client's socket and shuts the socket down: the answers no HTTP
 * library would produce. Answering the request afterwards lets evhttp notice the dead connection
 * and free it. */
static void send_raw_and_hang_up(struct evhttp_request *req, const char *raw, size_t len) {
  struct evhttp_connection *connection = evhttp_request_get_connection(req);
  int fd = connection ? bufferevent_getfd(evhttp_connection_get_bufferevent(connection)) : -1;
  if (fd >= 0) {
    ssize_t sent = send(fd, raw, len, MSG_NOSIGNAL);
    (void)sent;
    shutdown(fd, SHUT_RDWR);
  }
  evhttp_send_reply(req, 200, "OK", NULL);
}

static void send_mode(struct evhttp_request *req, const char *id, enum mode mode) {
  char value[64];
  char raw[512];
  int len;
  switch (mode) {
  case MODE_RESET:
    len = snprintf(raw, sizeof(raw),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                   "\r\n{\"id\":\"%s\",\"sta", id);
    send_raw_and_hang_up(req, raw, (size_t)len);
    return;
  case MODE_TRUNCATED_CHUNKED:
    len = snprintf(raw, sizeof(raw),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n30\r\n{\"id\":\"%s\",\"stat\r\n", id);
    send_raw_and_hang_up(req, raw, (size_t)len);
    return;
  case MODE_SHORT_LENGTH:
    /* Content-Length says 10: the client must read only "{"id":"49" and find it invalid. */
    len = snprintf(raw, sizeof(raw),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
                   "\r\n{\"id\":\"%s\"}", id);
    send_raw_and_hang_up(req, raw, (size_t)len);
    return;
  case MODE_GARBAGE_STATUS:
    len = snprintf(raw, sizeof(raw), "HTTP/1.1 two hundred\r\nX: y\r\n\r\n{}");
    send_raw_and_hang_up(req, raw, (size_t)len);
    return;
  case MODE_NESTED: {
    /* valid JSON with the right id, nested 10,000 deep */
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "{\"id\":\"%s\",\"x\":", id);
    for (int i = 0; i < 10000; i++)
      evbuffer_add(out, "[", 1);
    for (int i = 0; i < 10000; i++)
      evbuffer_add(out, "]", 1);
    evbuffer_add(out, "}", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    return;
  }
  case MODE_HUGE_JSON: {
    /* valid JSON with the right id, 5 MiB: over the daemon's body cap */
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "{\"id\":\"%s\",\"pad\":\"", id);
    static char filler[64 * 1024];
    memset(filler, 'p', sizeof(filler));
    for (int i = 0; i < 80; i++)
      evbuffer_add(out, filler, sizeof(filler));
    evbuffer_add(out, "\"}", 2);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    return;
  }
  case MODE_502:
    send_error(req, 502, "bad_gateway", "Bad gateway");
    return;
  case MODE_503:
    send_error(req, 503, "unavailable", "Service unavailable");
    return;
  case MODE_REDIRECT:
    snprintf(value, sizeof(value), "/_fake/redirect-target?id=%s", id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", value);
    send_error(req, 302, "moved", "Moved");
    return;
  case MODE_HUGE:
    send_stream(req, HUGE_BODY_BYTES, HUGE_CHUNK_BYTES, false);
    return;
  case MODE_TRICKLE:
    send_stream(req, 600, 1, true); /* one byte every 100 ms for a minute */
    return;
  case MODE_404:
    send_error(req, 404, "not_found", "Enrollment not found");
    return;
  case MODE_500:
    send_error(req, 500, "internal_error", "Internal server error");
    return;
  case MODE_401:
    send_error(req, 401, "unauthorized", "Invalid credentials");
    return;
  case MODE_429:
    snprintf(value, sizeof(value), "%u", fake.retry_after);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", value);
    send_error(req, 429, "rate_limited", "Too many requests");
    return;
  case MODE_GARBAGE:
    send_json(req, 200, "<html>this is not an enrollment{");
    return;
  case MODE_WRONG_ID:
    send_enrollment(req, id, "00000000-0000-4000-8000-000000000000");
    return;
  case MODE_SLOW:
  case MODE_HOLD: /* once released */
  case MODE_OK:
    send_enrollment(req, id, id);
    return;
  }
}

/* An answer held back by delay_ms. A client that hangs up meanwhile is still answered: evhttp
 * frees a request whose connection is gone when it is answered. */
struct delayed {
  struct evhttp_request *req;
  char id[ID_LEN + 1];
  enum mode mode;
  struct event *timer;              /* NULL: held by "hold" until released */
  TAILQ_ENTRY(delayed) held_link;   /* in held_requests, oldest first, while held by "hold" */
};
static TAILQ_HEAD(, delayed) held_requests = TAILQ_HEAD_INITIALIZER(held_requests);

/* Answers held requests, oldest first: those for `id` (NULL: any), at most `most` (0: all). */
static unsigned release_held(const char *id, unsigned most) {
  unsigned released = 0;
  struct delayed *delayed = TAILQ_FIRST(&held_requests);
  while (delayed && (most == 0 || released < most)) {
    struct delayed *next = TAILQ_NEXT(delayed, held_link);
    if (!id || strcmp(id, delayed->id) == 0) {
      TAILQ_REMOVE(&held_requests, delayed, held_link);
      fake.held--;
      send_mode(delayed->req, delayed->id, MODE_OK);
      free(delayed);
      released++;
    }
    delayed = next;
  }
  return released;
}

static struct program_state *find_program(const char *id, bool create) {
  for (size_t i = 0; i < fake.program_count; i++)
    if (strcmp(fake.programs[i].id, id) == 0)
      return &fake.programs[i];
  if (!create || fake.program_count == MAX_PROGRAMS || strlen(id) >= sizeof(fake.programs[0].id))
    return NULL;
  struct program_state *program = &fake.programs[fake.program_count++];
  memset(program, 0, sizeof(*program));
  snprintf(program->id, sizeof(program->id), "%s", id);
  snprintf(program->prefix, sizeof(program->prefix), "%08x", (unsigned)fake.program_count);
  return program;
}

/* The list of a program (an unknown one lists nothing), built whole in an evbuffer. */
static void send_list(struct evhttp_request *req, const struct program_state *program) {
  enum list_mode mode = program ? program->mode : LIST_OK;
  unsigned count = program ? program->count : 0;
  if (mode == LIST_500) {
    send_error(req, 500, "internal_error", "Internal server error");
    return;
  }
  if (mode == LIST_GARBAGE) {
    send_json(req, 200, "<html>not a list</html>");
    return;
  }
  if (mode == LIST_HUGE)
    count = HUGE_LIST_COUNT;
  struct evbuffer *out = evbuffer_new();
  evbuffer_add_printf(out, mode == LIST_NOT_OBJECT ? "[" : "{\"enrollments\":[");
  char body[2048], id[ID_LEN + 1];
  for (unsigned i = 0; i < count; i++) {
    snprintf(id, sizeof(id), "%s-0000-4000-8000-%012x", program->prefix, i);
    if (mode == LIST_BAD_ELEMENT && i == count / 2)
      snprintf(id, sizeof(id), "not-a-uuid");
    int len = format_enrollment(body, sizeof(body), id, 0);
    if (i)
      evbuffer_add(out, ",", 1);
    evbuffer_add(out, body, (size_t)len);
  }
  evbuffer_add_printf(out, mode == LIST_NOT_OBJECT ? "]" : "]}");
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, 200, NULL, out);
  evbuffer_free(out);
}

struct delayed_list {
  struct evhttp_request *req;
  struct program_state *program;
  struct event *timer;
};

static void on_list_delay_done(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct delayed_list *delayed = arg;
  send_list(delayed->req, delayed->program);
  event_free(delayed->timer);
  free(delayed);
}

static void answer_list(struct evhttp_request *req, const char *query) {
  struct evkeyvalq params;
  TAILQ_INIT(&params);
  if (query)
    evhttp_parse_query_str(query, &params);
  const char *program_id = evhttp_find_header(&params, "program_id");
  fake.list_requests++;
  if (!program_id) {
    send_error(req, 422, "missing_program_id", "program_id is required");
    evhttp_clear_headers(&params);
    return;
  }
  struct program_state *program = find_program(program_id, false);
  evhttp_clear_headers(&params);
  if (program)
    program->requests++;
  if (!program || program->delay_ms == 0) {
    send_list(req, program);
    return;
  }
  struct delayed_list *delayed = calloc(1, sizeof(*delayed));
  delayed->req = req;
  delayed->program = program;
  delayed->timer = evtimer_new(fake.base, on_list_delay_done, delayed);
  struct timeval tv = {.tv_sec = program->delay_ms / 1000,
                       .tv_usec = (program->delay_ms % 1000) * 1000};
  evtimer_add(delayed->timer, &tv);
}

static void on_delay_done(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct delayed *delayed = arg;
  fake.held--;
  send_mode(delayed->req, delayed->id, delayed->mode);
  event_free(delayed->timer);
  free(delayed);
}

static void answer_enrollment(struct evhttp_request *req, const char *raw_id) {
  char id[ID_LEN + 1];
  snprintf(id, sizeof(id), "%.36s", raw_id); /* is_uuid checked it: 36 characters */
  for (char *p = id; *p; p++)
    *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
  struct id_state *state = find_id(id, true);
  if (state)
    state->count++;
  enum mode mode = state && state->has_mode ? state->mode : fake.default_mode;
  unsigned delay_ms = state && state->has_mode ? state->delay_ms : fake.default_delay_ms;
  if (state && state->has_mode && state->fail_times > 0 && state->count > state->fail_times)
    mode = MODE_OK;
  if (delay_ms == 0 && mode != MODE_HOLD) {
    send_mode(req, id, mode);
    return;
  }
  struct delayed *delayed = calloc(1, sizeof(*delayed));
  delayed->req = req;
  delayed->mode = mode;
  memcpy(delayed->id, id, sizeof(delayed->id));
  if (++fake.held > fake.held_most)
    fake.held_most = fake.held;
  if (mode == MODE_HOLD) {
    TAILQ_INSERT_TAIL(&held_requests, delayed, held_link);
    return;
  }
  delayed->timer = evtimer_new(fake.base, on_delay_done, delayed);
  struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
  evtimer_add(delayed->timer, &tv);
}

static void answer_control(struct evhttp_request *req, const char *path, const char *query) {
  struct evkeyvalq params;
  TAILQ_INIT(&params);
  if (query)
    evhttp_parse_query_str(query, &params);
  const char *id = evhttp_find_header(&params, "id");
  char body[512];
  if (strcmp(path, "/_fake/mode") == 0) {
    const char *mode_name = evhttp_find_header(&params, "mode");
    const char *delay = evhttp_find_header(&params, "delay_ms");
    const char *fail_times = evhttp_find_header(&params, "fail_times");
    int mode = -1;
    for (size_t i = 0; mode_name && i < sizeof(MODE_NAMES) / sizeof(MODE_NAMES[0]); i++) {
      if (strcmp(mode_name, MODE_NAMES[i]) == 0)
        mode = (int)i;
    }
    if (!id || mode < 0) {
      send_json(req, 400, "{\"error\":\"need id and a known mode\"}");
    } else if (strcmp(id, "*") == 0) {
      fake.default_mode = (enum mode)mode;
      fake.default_delay_ms = delay ? (unsigned)atoi(delay) : 0;
      send_json(req, 200, "{\"ok\":true}");
    } else {
      struct id_state *state = find_id(id, true);
      if (!state) {
        send_json(req, 507, "{\"error\":\"the fake's table of ids is full\"}");
        evhttp_clear_headers(&params);
        return;
      }
      state->has_mode = true;
      state->mode = (enum mode)mode;
      state->delay_ms = delay ? (unsigned)atoi(delay) : 0;
      state->fail_times = fail_times ? (unsigned)atoi(fail_times) : 0;
      send_json(req, 200, "{\"ok\":true}");
    }
  } else if (strcmp(path, "/_fake/version") == 0 && id && is_uuid(id)) {
    struct id_state *state = find_id(id, true);
    if (!state) {
      send_json(req, 507, "{\"error\":\"the fake's table of ids is full\"}");
    } else {
      state->version++;
      log_version("version", id, state->version);
      snprintf(body, sizeof(body), "{\"version\":%u}", state->version);
      send_json(req, 200, body);
    }
  } else if (strcmp(path, "/_fake/program") == 0 && id) {
    struct program_state *program = find_program(id, true);
    const char *count = evhttp_find_header(&params, "count");
    const char *prefix = evhttp_find_header(&params, "prefix");
    const char *mode_name = evhttp_find_header(&params, "mode");
    const char *delay = evhttp_find_header(&params, "delay_ms");
    int mode = mode_name ? -1 : LIST_OK;
    for (size_t i = 0; mode_name && i < sizeof(LIST_MODE_NAMES) / sizeof(LIST_MODE_NAMES[0]); i++)
      if (strcmp(mode_name, LIST_MODE_NAMES[i]) == 0)
        mode = (int)i;
    if (!program || mode < 0 || (prefix && strlen(prefix) != 8)) {
      send_json(req, 400, "{\"error\":\"need a known mode, an 8-digit prefix, room\"}");
    } else {
      program->count = count ? (unsigned)atoi(count) : program->count;
      if (prefix)
        snprintf(program->prefix, sizeof(program->prefix), "%s", prefix);
      program->mode = (enum list_mode)mode;
      program->delay_ms = delay ? (unsigned)atoi(delay) : 0;
      send_json(req, 200, "{\"ok\":true}");
    }
  } else if (strcmp(path, "/_fake/count") == 0 && evhttp_find_header(&params, "program_id")) {
    struct program_state *program = find_program(evhttp_find_header(&params, "program_id"), false);
    snprintf(body, sizeof(body), "{\"count\":%lu}", program ? program->requests : 0);
    send_json(req, 200, body);
  } else if (strcmp(path, "/_fake/count") == 0 && id) {
    struct id_state *state = find_id(id, false);
    snprintf(body, sizeof(body), "{\"count\":%lu}", state ? state->count : 0);
    send_json(req, 200, body);
  } else if (strcmp(path, "/_fake/stats") == 0) {
    snprintf(body, sizeof(body),
             "{\"total\":%lu,\"auth_ok\":%lu,\"auth_bad\":%lu,\"cookie_seen\":%lu,"
             "\"forwarded_seen\":%lu,\"redirect_target_hits\":%lu,\"connections\":%zu,"
             "\"tokens_issued\":%lu,\"token_requests_refused\":%lu,\"list_requests\":%lu,"
             "\"held\":%lu,\"held_most\":%lu,\"conditional_seen\":%lu,\"not_modified\":%lu}",
             fake.total, fake.auth_ok, fake.auth_bad, fake.cookie_seen, fake.forwarded_seen,
             fake.redirect_target_hits, fake.peer_count, fake.tokens_issued,
             fake.token_requests_refused, fake.list_requests, fake.held, fake.held_most,
             fake.conditional_seen, fake.not_modified);
    send_json(req, 200, body);
  } else if (strcmp(path, "/_fake/redirect-target") == 0) {
    fake.redirect_target_hits++;
    send_json(req, 200, "{\"id\":\"followed\"}");
  } else if (strcmp(path, "/_fake/retry-after") == 0 && evhttp_find_header(&params, "seconds")) {
    fake.retry_after = (unsigned)atoi(evhttp_find_header(&params, "seconds"));
    send_json(req, 200, "{\"ok\":true}");
  } else if (strcmp(path, "/_fake/token") == 0 && evhttp_find_header(&params, "value")) {
    snprintf(fake.expected_authorization, sizeof(fake.expected_authorization), "Bearer %s",
             evhttp_find_header(&params, "value"));
    send_json(req, 200, "{\"ok\":true}");
  } else if (strcmp(path, "/_fake/oauth") == 0 && evhttp_find_header(&params, "expires_in")) {
    fake.token_expires_in = (unsigned)atoi(evhttp_find_header(&params, "expires_in"));
    send_json(req, 200, "{\"ok\":true}");
  } else if (strcmp(path, "/_fake/oauth-trickle") == 0 && evhttp_find_header(&params, "on")) {
    fake.token_trickle = atoi(evhttp_find_header(&params, "on")) != 0;
    send_json(req, 200, "{\"ok\":true}");
  } else if (strcmp(path, "/_fake/oauth-revoke") == 0) {
    for (size_t i = 0; i < fake.token_count; i++)
      fake.tokens[i].revoked = true;
    send_json(req, 200, "{\"ok\":true}");
  } else if (strcmp(path, "/_fake/oauth-tokens") == 0) {
    /* The access tokens issued, so that a test can look for them where they must not be. */
    char list[MAX_TOKENS * 70 + 32] = "{\"tokens\":[";
    for (size_t i = 0; i < fake.token_count; i++) {
      strcat(list, i ? ",\"" : "\"");
      strcat(list, fake.tokens[i].value);
      strcat(list, "\"");
    }
    strcat(list, "]}");
    send_json(req, 200, list);
  } else if (strcmp(path, "/_fake/release") == 0) {
    const char *most = evhttp_find_header(&params, "n");
    snprintf(body, sizeof(body), "{\"released\":%u}",
             release_held(id, most ? (unsigned)atoi(most) : 0));
    send_json(req, 200, body);
  } else if (strcmp(path, "/_fake/validators") == 0 && evhttp_find_header(&params, "send")) {
    const char *send = evhttp_find_header(&params, "send");
    size_t v = 0;
    while (v < sizeof(VALIDATOR_NAMES) / sizeof(VALIDATOR_NAMES[0]) && strcmp(send, VALIDATOR_NAMES[v]))
      v++;
    if (v == sizeof(VALIDATOR_NAMES) / sizeof(VALIDATOR_NAMES[0])) {
      send_json(req, 400, "{\"error\":\"send: none, etag, last-modified, both or bad\"}");
    } else {
      fake.validators = (enum validators)v;
      send_json(req, 200, "{\"ok\":true}");
    }
  } else if (strcmp(path, "/_fake/reset") == 0) {
    fake.validators = VALIDATORS_NONE;
    fake.conditional_seen = fake.not_modified = 0;
    release_held(NULL, 0);
    fake.id_count = 0;
    memset(fake.id_slots, 0, sizeof(fake.id_slots));
    fake.default_mode = MODE_OK;
    fake.default_delay_ms = 0;
    fake.total = fake.auth_ok = fake.auth_bad = fake.cookie_seen = fake.forwarded_seen = 0;
    fake.redirect_target_hits = 0;
    fake.held_most = fake.held;
    fake.peer_count = 0;
    fake.program_count = 0;
    fake.list_requests = 0;
    send_json(req, 200, "{\"ok\":true}");
  } else {
    send_json(req, 404, "{\"error\":\"no such control route\"}");
  }
  evhttp_clear_headers(&params);
}

/* Counts distinct client connections by their (address, port). */
static void note_peer(struct evhttp_request *req) {
  struct evhttp_connection *connection = evhttp_request_get_connection(req);
  char *address = NULL;
  ev_uint16_t port = 0;
  if (!connection)
    return;
  evhttp_connection_get_peer(connection, &address, &port);
  for (size_t i = 0; i < fake.peer_count; i++) {
    if (fake.peers[i].port == port && address && strcmp(fake.peers[i].address, address) == 0)
      return;
  }
  if (fake.peer_count < MAX_PEERS && address) {
    snprintf(fake.peers[fake.peer_count].address, sizeof(fake.peers[0].address), "%s", address);
    fake.peers[fake.peer_count].port = port;
    fake.peer_count++;
  }
}

static void on_request(struct evhttp_request *req, void *arg) {
  (void)arg;
  const char *uri = evhttp_request_get_uri(req);
  char path[512];
  snprintf(path, sizeof(path), "%s", uri);
  char *query = strchr(path, '?');
  if (query)
    *query++ = '\0';
  if (strncmp(path, "/_fake/", 7) == 0) {
    answer_control(req, path, query);
    return;
  }
  if (strcmp(path, "/oauth/token") == 0) {
    answer_token(req);
    return;
  }
  static const char PREFIX[] = "/v1/enrollments/";
  if (strncmp(path, PREFIX, sizeof(PREFIX) - 1) != 0 && strcmp(path, "/v1/enrollments") != 0) {
    send_error(req, 404, "not_found", "Not found");
    return;
  }
  fake.total++;
  note_peer(req);
  struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
  if (evhttp_find_header(headers, "Cookie"))
    fake.cookie_seen++;
  if (evhttp_find_header(headers, "X-Forwarded-For") || evhttp_find_header(headers, "Forwarded"))
    fake.forwarded_seen++;
  const char *authorization = evhttp_find_header(headers, "Authorization");
  if (!authorization || (strcmp(authorization, fake.expected_authorization) != 0 &&
                         !issued_token_accepted(authorization))) {
    fake.auth_bad++;
    send_error(req, 401, "unauthorized", "Missing or invalid bearer token");
    return;
  }
  fake.auth_ok++;
  if (strcmp(path, "/v1/enrollments") == 0) {
    answer_list(req, query);
    return;
  }
  const char *id = path + sizeof(PREFIX) - 1;
  if (!is_uuid(id)) {
    send_error(req, 422, "invalid_id", "Input should be a valid UUID");
    return;
  }
  answer_enrollment(req, id);
}

static void on_signal(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  event_base_loopexit(fake.base, NULL);
}

/* --help: what the demo's reader needs without reading this file. */
static const char USAGE[] =
    "usage: flip-fake-upstream --token-file FILE [--port N] [--client-id ID --client-secret-file FILE]\n"
    "                          [--serve-log FILE]\n"
    "A stand-in for the Flip API on 127.0.0.1 (for the tests and the demo): GET\n"
    "/v1/enrollments/{id} answers a synthetic enrollment to \"Authorization: Bearer <token>\".\n"
    "\n"
    "  --token-file FILE          the key it expects (the first line)\n"
    "  --port N                   the port (default 8751; 0 picks a free one)\n"
    "  --client-id, --client-secret-file  also an OAuth2 token endpoint, POST /oauth/token\n"
    "  --serve-log FILE           a JSON line per version change and per 200 served\n"
    "  -h, --help                 this text\n"
    "\n"
    "Control routes (no credential; e.g. curl -X POST 'http://127.0.0.1:8751/_fake/mode?id=*&mode=500'):\n"
    "  POST /_fake/mode?id=<uuid|*>&mode=M[&delay_ms=N][&fail_times=N]  how to answer\n"
    "  GET  /_fake/count?id=<uuid>      enrollment requests received for that id\n"
    "  GET  /_fake/stats                counts of everything received\n"
    "  POST /_fake/version?id=<uuid>    the enrollment changes (a new updated_at)\n"
    "  POST /_fake/validators?send=none|etag|last-modified|both|bad  validators on a 200\n"
    "  POST /_fake/retry-after?seconds=N  the Retry-After of a 429 (default 7)\n"
    "  POST /_fake/token?value=KEY      expect another key from now on\n"
    "  POST /_fake/release[?id=<uuid>|?n=N]  answer requests held by mode=hold\n"
    "  POST /_fake/program?id=P&count=N&prefix=HHHHHHHH[&mode=M]  a program's list\n"
    "  POST /_fake/oauth?expires_in=N, /_fake/oauth-revoke, /_fake/oauth-trickle?on=0|1\n"
    "  POST /_fake/reset                counts and modes back to zero and ok\n"
    "\n"
    "Modes are failures to show: a status (404, 429 with Retry-After, 500, ...), garbage (not\n"
    "JSON), wrong-id (another enrollment's id), hold (no answer until released), trickle (a\n"
    "byte every 100 ms), reset (the socket shut mid-body), huge (64 MiB); slow is ok after\n"
    "delay_ms. The whole list:\n";

static void print_usage(FILE *out) {
  fputs(USAGE, out);
  fputs("  enrollment modes:", out);
  for (size_t i = 0; i < sizeof(MODE_NAMES) / sizeof(MODE_NAMES[0]); i++)
    fprintf(out, " %s", MODE_NAMES[i]);
  fputs("\n  program list modes:", out);
  for (size_t i = 0; i < sizeof(LIST_MODE_NAMES) / sizeof(LIST_MODE_NAMES[0]); i++)
    fprintf(out, " %s", LIST_MODE_NAMES[i]);
  fputs("\n", out);
}

int main(int argc, char **argv) {
  int port = 8751;
  const char *token_file = NULL, *client_id = NULL, *client_secret_file = NULL;
  static const struct option OPTIONS[] = {{"port", required_argument, NULL, 'p'},
                                          {"token-file", required_argument, NULL, 't'},
                                          {"client-id", required_argument, NULL, 'i'},
                                          {"client-secret-file", required_argument, NULL, 's'},
                                          {"serve-log", required_argument, NULL, 'l'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int option;
  while ((option = getopt_long(argc, argv, "p:t:i:s:l:h", OPTIONS, NULL)) != -1) {
    if (option == 'h') {
      print_usage(stdout);
      return 0;
    } else if (option == 'p')
      port = atoi(optarg);
    else if (option == 't')
      token_file = optarg;
    else if (option == 'i')
      client_id = optarg;
    else if (option == 's')
      client_secret_file = optarg;
    else if (option == 'l' && !(fake.serve_log = fopen(optarg, "a"))) {
      fprintf(stderr, "flip-fake-upstream: cannot open %s\n", optarg);
      return 1;
    } else if (option != 'l') {
      print_usage(stderr);
      return 2;
    }
  }
  fake.token_expires_in = 3600;
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  if (client_id && client_secret_file) {
    FILE *secret_file = fopen(client_secret_file, "r");
    char secret[4097] = "", pair[8300];
    if (!secret_file || !fgets(secret, sizeof(secret), secret_file)) {
      fprintf(stderr, "flip-fake-upstream: cannot read %s\n", client_secret_file);
      return 1;
    }
    fclose(secret_file);
    secret[strcspn(secret, "\r\n")] = '\0';
    /* the daemon form-urlencodes; tests use id and secret that need no encoding */
    snprintf(pair, sizeof(pair), "%s:%s", client_id, secret);
    char encoded[8300];
    base64((const unsigned char *)pair, strlen(pair), encoded);
    snprintf(fake.expected_client_basic, sizeof(fake.expected_client_basic), "Basic %s", encoded);
  }
  if (!token_file) {
    print_usage(stderr);
    return 2;
  }
  FILE *file = fopen(token_file, "r");
  char token[4097] = "";
  if (!file || !fgets(token, sizeof(token), file)) {
    fprintf(stderr, "flip-fake-upstream: cannot read %s\n", token_file);
    return 1;
  }
  fclose(file);
  token[strcspn(token, "\r\n")] = '\0';
  snprintf(fake.expected_authorization, sizeof(fake.expected_authorization), "Bearer %s", token);

  signal(SIGPIPE, SIG_IGN);
  fake.retry_after = 7;
  fake.base = event_base_new();
  struct evhttp *http = evhttp_new(fake.base);
  evhttp_set_gencb(http, on_request, NULL);
  struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
  if (!bound) {
    fprintf(stderr, "flip-fake-upstream: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  struct sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&addr)->sin_port));
  fflush(stdout);
  struct event *term = evsignal_new(fake.base, SIGTERM, on_signal, NULL);
  struct event *interrupt = evsignal_new(fake.base, SIGINT, on_signal, NULL);
  evsignal_add(term, NULL);
  evsignal_add(interrupt, NULL);
  event_base_dispatch(fake.base);
  event_free(term);
  event_free(interrupt);
  evhttp_free(http);
  event_base_free(fake.base);
  return 0;
}
