/* harness: start the real flipcached and the fake upstream, and talk HTTP to them.
 * Every helper either succeeds or fails the current Criterion test with a message. */
#ifndef FLIPCACHED_TEST_HARNESS_H
#define FLIPCACHED_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "files.h"

struct fake_upstream {
  pid_t pid;
  int port;
  char base_url[64];
};

struct daemon_options {
  unsigned ttl;               /* 0: 300 */
  unsigned timeout_ms;        /* 0: 5000 */
  const char *log_level;      /* NULL: debug */
  const char *base_url;       /* NULL: the fake's */
  const char *extra_upstream; /* more lines for [upstream], or NULL */
  const char *extra_cache;    /* more lines for [cache] (not ttl, max_size), or NULL */
  const char *extra_server;   /* more lines for [server] (not listen, miss_rate_per_user), or NULL */
  const char *extra_sections; /* whole sections appended before [log] (e.g. "[warm]\n..."), or NULL */
  unsigned miss_rate;         /* [server] miss_rate_per_user; 0: not written (the daemon's
                                 default: off) */
  const char *max_size;       /* NULL: 16M */
  const char *token;          /* NULL: a new random one */
  bool unix_socket;           /* also listen on unix:DIR/http.sock */
  const char *oauth_client_id;     /* set: OAuth2 against the fake's /oauth/token, with... */
  const char *oauth_client_secret; /* ...this secret, written to DIR/client-secret (0600) */
};

struct flipcached_proc {
  pid_t pid;
  int port;
  char dir[256];       /* a fresh directory: config, token, cache, log */
  char config[320];
  char token_path[320];
  char log_path[320];
  char url[64];        /* http://127.0.0.1:PORT */
  char token[64];      /* the credential this instance holds */
  char credentials_directory[320]; /* non-empty: exported as $CREDENTIALS_DIRECTORY */
  char unix_socket[320];           /* with options->unix_socket: its path */
  char client_secret_path[320];    /* with options->oauth_client_secret */
  char env[4][512];                /* extra "NAME=value" for the daemon's environment */
  int inherited[2];                /* listening sockets passed as systemd does (fd 3, 4, ...) */
  char strace_output[320];         /* non-empty: run under strace -f, its syscalls of the
                                      fsync family written here; pid is strace's */
  size_t inherited_count;
};

struct http_response {
  long status;
  char *body;
  size_t body_len;
  char *headers;       /* the raw response header block */
};

void fake_start(struct fake_upstream *fake, const char *token);
/* The fake also issues OAuth2 access tokens to this client. */
void fake_start_oauth(struct fake_upstream *fake, const char *token, const char *client_id,
                      const char *client_secret);
void fake_stop(struct fake_upstream *fake);
/* docs/http.md's table of every Cache-Status: each row's value (N for a number of seconds) and
 * status, in *values and *statuses (at most max rows); returns how many. */
#define DOC_CACHE_STATUS_MAX 160
size_t documented_cache_statuses(char (*values)[DOC_CACHE_STATUS_MAX], long *statuses, size_t max);
/* Whether a Cache-Status value is the documented one, N matching any whole number (a minus
 * sign included: "ttl=-N" is "ttl=-" and digits). */
bool cache_status_matches(const char *documented, const char *actual);

/* POST {fake}/_fake/... (path_and_query from "/_fake/"); asserts a 200. */
void fake_control(struct fake_upstream *fake, const char *path_and_query);
void fake_set_mode(struct fake_upstream *fake, const char *id, const char *mode, unsigned delay_ms);
/* The mode answers the next `times` requests for id, then the fake answers "ok". */
void fake_fail_times(struct fake_upstream *fake, const char *id, const char *mode, unsigned times);
/* The Retry-After the fake's 429s carry. */
void fake_retry_after(struct fake_upstream *fake, unsigned seconds);
/* Answers (as "ok") requests the "hold" mode holds, oldest first: those for id (NULL: any), at
 * most `most` of them (0: all). How many it answered. */
long fake_release(struct fake_upstream *fake, const char *id, unsigned most);
/* From now on the fake accepts only "Bearer token". */
void fake_expect_token(struct fake_upstream *fake, const char *token);
long fake_count(struct fake_upstream *fake, const char *id);
/* Gives program_id `count` enrollments, ids "prefix-0000-4000-8000-<i as 12 hex digits>", listed
 * as `mode` (ok, 500, garbage, not-object, bad-element, huge) after delay_ms. */
void fake_set_program(struct fake_upstream *fake, const char *program_id, unsigned count,
                      const char *prefix, const char *mode, unsigned delay_ms);
/* List requests the fake received for program_id. */
long fake_program_count(struct fake_upstream *fake, const char *program_id);
long fake_stat(struct fake_upstream *fake, const char *field);

/* A random token per test, so that a leak check can search for it. */
void make_token(char *out, size_t out_len);
/* Writes the config and token into a new directory; does not start anything. */
void flipcached_prepare(struct flipcached_proc *proc, const struct fake_upstream *fake,
                        const struct daemon_options *options);
/* Forks and execs the prepared daemon (stdout and stderr to its log, $CREDENTIALS_DIRECTORY as
 * the proc says) without waiting for anything; returns its pid. */
pid_t flipcached_spawn(const struct flipcached_proc *proc);
/* Starts the prepared daemon and waits until /healthz answers 200. */
void flipcached_launch(struct flipcached_proc *proc);
void flipcached_start(struct flipcached_proc *proc, const struct fake_upstream *fake,
                      const struct daemon_options *options);
/* Sends SIGHUP and waits (bounded) until the log gains a line containing `then_logged`. */
void flipcached_reload(struct flipcached_proc *proc, const char *then_logged);
/* Writes proc's token file with `token` and mode. */
void flipcached_write_token(const struct flipcached_proc *proc, const char *token, mode_t mode);
/* The daemon's own pid: proc->pid, or under strace its child. */
pid_t flipcached_daemon_pid(const struct flipcached_proc *proc);
/* SIGTERM, wait; returns the exit status (or 128 + signal). */
int flipcached_stop(struct flipcached_proc *proc);
/* The whole log written so far (malloc'd). */
char *flipcached_log(const struct flipcached_proc *proc);

/* The status of the daemon's GET /healthz (0 when it does not answer). */
long flipcached_healthz_status(const struct flipcached_proc *proc);
/* A number of the daemon's /stats, or -1. */
long flipcached_stat(const struct flipcached_proc *proc, const char *field);
/* The fake refuses every OAuth access token issued so far. */
void fake_oauth_revoke(struct fake_upstream *fake);

/* The usual fixture: a fake upstream and a daemon sharing a new random credential. */
void fixture_start(struct fake_upstream *fake, struct flipcached_proc *proc,
                   const struct daemon_options *options);
/* Stops both (a daemon already stopped is skipped) and removes the daemon's directory; expects
 * the daemon to exit 0 (under AddressSanitizer, exit 0 also means no leak). */
void fixture_stop(struct fake_upstream *fake, struct flipcached_proc *proc);
/* GET {proc}/v1/enrollments/{id}. */
void get_enrollment_from(const struct flipcached_proc *proc, const char *id,
                         struct http_response *response);

/* method NULL: GET. headers: NULL-terminated "Name: value" lines, or NULL. */
void http_request(const char *method, const char *url, const char *const *headers,
                  struct http_response *response);
void http_get(const char *url, struct http_response *response);
/* GET with a client-side time limit: a response slower than timeout_ms has status 0. */
void http_get_within(const char *url, long timeout_ms, struct http_response *response);
/* n GETs at once (curl multi, one connection each): urls[i] answered in responses[i]. */
void http_get_concurrently(const char *const *urls, size_t n, struct http_response *responses);
/* n GETs over at most `connections` kept-alive connections at once (a new request starts as one
 * ends): urls[i] answered in responses[i] (status 0 when it failed). For thousands of requests. */
void http_get_many(const char *const *urls, size_t n, size_t connections,
                   struct http_response *responses);
/* GET over a unix socket: url's host part is ignored. */
void http_get_unix(const char *socket_path, const char *url, struct http_response *response);
/* The value of a response header (case-insensitive name), copied into out; false if absent. */
bool http_header(const struct http_response *response, const char *name, char *out, size_t out_len);
void http_response_free(struct http_response *response);
/* A JSON number field of the body, or -1. */
long json_field(const char *json, const char *field);

/* Sends GET /v1/enrollments/ID over a new connection to 127.0.0.1:port and does not wait: the
 * connection, for raw_answer_status. */
int raw_ask_enrollment(int port, const char *id);
/* The status of the one answer on a connection from raw_ask_enrollment (within 10 s; 0: none),
 * then closes it. */
long raw_answer_status(int connection);
/* Connects to 127.0.0.1:port and sends request as given (no client library tidying it). */
int raw_send(int port, const char *request, size_t len);
/* Reads fd until the peer closes or out is full (NUL-terminated); returns the length. */
size_t raw_read_all(int fd, char *out, size_t out_cap);
/* The CPU time (user + system) process pid has used so far, in milliseconds, or -1. */
long proc_cpu_ms(pid_t pid);
/* A "Name: N kB" field of /proc/PID/status (VmRSS, VmHWM...), or -1. */
long proc_status_kb(pid_t pid, const char *field);
/* Connects to 127.0.0.1:port (blocking socket). */
int raw_connect(int port);
/* The same, returning -1 instead of failing the test (for waiting until a server listens). */
int raw_connect_quietly(int port);
/* Reads one whole response (its head and Content-Length bytes of body) from a kept-alive
 * connection into out, within timeout_ms; returns its length, 0 on a close or a timeout. */
size_t raw_read_response(int fd, char *out, size_t out_cap, long timeout_ms);
/* Waits up to timeout_ms for the peer to close (EOF or reset), discarding what it sends first;
 * true if it closed. */
bool raw_wait_closed(int fd, long timeout_ms);
/* raw_send, then reads the answer until the server closes or out is full; returns its length. */
size_t raw_exchange(int port, const char *request, size_t len, char *out, size_t out_cap);

/* Fills out with len bytes from /dev/urandom (len up to 4096: one read). */
void fill_random(void *out, size_t len);
/* Sleeps ms milliseconds. */
void pause_ms(long ms);

/* Runs a shell command; returns its exit status and what it printed (stdout and stderr). */
int run_command(const char *command, char *out, size_t out_cap);

/* One request made by curl as another local user: `identity` is setpriv's options (e.g.
 * "--reuid=65534 --regid=65534 --clear-groups"). method NULL: GET; unix_socket NULL: TCP;
 * headers: NULL-terminated "Name: value" lines (no single quote), or NULL. Status 0 when no
 * answer came (a refused connect, for one). */
void http_as(const char *identity, const char *method, const char *url, const char *unix_socket,
             const char *const *headers, struct http_response *response);

/* A TCP port on 127.0.0.1, free now and reserved for this test process until it exits: no
 * concurrent test is given it and no outgoing connection takes it (it lies outside the kernel's
 * ephemeral range). For a daemon's listener, or as an upstream address nothing listens on. */
int free_port(void);

/* The kernel's ephemeral port range (ip_local_port_range), which bind(0) and connect() draw
 * from. */
void ephemeral_port_range(int *low, int *high);
/* The ports free_port reserves from, given the ephemeral range low..high: [*first, *first +
 * *count), outside the ephemeral range unless that leaves fewer than 1,000 ports. */
void reservable_port_range(int low, int high, int *first, int *count);

#endif
