/* The boundary tried as the adversary on its other side: uid 65534 (nobody) racing a close
 * against the daemon's look-up of who it is, one user holding every connection slot, and a
 * listed web page reaching for the admin routes. Every client that is not root is a forked child
 * that drops to 65534 itself (setresuid), so that nothing but the kernel says who it is. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define NOBODY_UID 65534

TestSuite(boundary, .fini = stop_all, .timeout = 120);

/* A daemon with these [server] lines, the access log on, and also listening on [::1] (its port
 * in *v6_port when asked for). */
static void start(const char *server_lines, int *v6_port) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token, .extra_server = server_lines};
  flipcached_prepare(&daemon_proc, &fake, &options);
  char command[900], out[1024];
  if (v6_port) {
    *v6_port = free_port();
    snprintf(command, sizeof(command),
             "sed -i 's/^listen = 127.0.0.1:%d$/listen = 127.0.0.1:%d [::1]:%d/' %s",
             daemon_proc.port, daemon_proc.port, *v6_port, daemon_proc.config);
    cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  }
  snprintf(command, sizeof(command), "printf '[log]\\naccess = yes\\n' >> %s", daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_launch(&daemon_proc);
}

/* In a forked child: become uid and gid 65534 with no supplementary groups, for good. */
static void become_nobody(void) {
  if (setgroups(0, NULL) != 0 || setresgid(NOBODY_UID, NOBODY_UID, NOBODY_UID) != 0 ||
      setresuid(NOBODY_UID, NOBODY_UID, NOBODY_UID) != 0)
    _exit(100);
}

static int connect_to(int family, int port) {
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_storage storage = {0};
  socklen_t len;
  if (family == AF_INET6) {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    v6->sin6_addr = in6addr_loopback;
    len = sizeof(*v6);
  } else {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*v4);
  }
  if (connect(fd, (struct sockaddr *)&storage, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* A child (as nobody, or as root with as_nobody false) that for `seconds` connects, sends
 * `request` whole and closes at once, never reading: the send-and-close race. */
static pid_t spawn_send_and_close(int family, int port, const char *request, double seconds) {
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid != 0)
    return pid;
  become_nobody();
  size_t len = strlen(request);
  double until = now_seconds() + seconds;
  while (now_seconds() < until) {
    int fd = connect_to(family, port);
    if (fd < 0)
      continue; /* a full backlog: try again */
    if (send(fd, request, len, MSG_NOSIGNAL) < 0) {
      /* the daemon already refused it */
    }
    close(fd);
  }
  _exit(0);
}

/* A child (root) that keeps the daemon's loop busy: `connections` connections, each sending
 * pipelines of 32 GET /metrics and reading what comes back, for `seconds`. */
static pid_t spawn_metrics_load(int port, int connections, double seconds) {
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid != 0)
    return pid;
  static const char one[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  char pipeline[sizeof(one) * 32];
  size_t len = 0;
  for (int i = 0; i < 32; i++, len += sizeof(one) - 1)
    memcpy(pipeline + len, one, sizeof(one) - 1);
  int fds[16];
  for (int i = 0; i < connections && i < 16; i++)
    fds[i] = connect_to(AF_INET, port);
  static char sink[1 << 16];
  double until = now_seconds() + seconds;
  while (now_seconds() < until) {
    for (int i = 0; i < connections && i < 16; i++) {
      if (fds[i] < 0 || send(fds[i], pipeline, len, MSG_NOSIGNAL) < 0)
        _exit(1);
      if (recv(fds[i], sink, sizeof(sink), MSG_DONTWAIT) < 0 && errno != EAGAIN)
        _exit(1);
    }
    for (int i = 0; i < connections && i < 16; i++)
      while (recv(fds[i], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
      }
  }
  _exit(0);
}

static int wait_child(pid_t pid) {
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Lines of the daemon's log that contain both texts. */
static long log_lines_with(const char *first, const char *second) {
  char *log = flipcached_log(&daemon_proc);
  long count = 0;
  for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
    count += strstr(line, first) && strstr(line, second);
  free(log);
  return count;
}

/* Round two's proof, played again: nobody's send-and-close DELETEs (of an id, of the whole
 * cache) and warm-ups, while pipelines of /metrics keep the loop busy so that many of them are
 * accepted only once the client's socket is in TIME_WAIT, where inet_diag says uid 0. Not one
 * may be taken for root's: each is answered as nobody's or an unknown peer's, 403, and the entry
 * root stored is still there. */
static void race_as_nobody(int family) {
  int v6_port = 0;
  start("admin_users = root\nallow_users = root\n", &v6_port);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
  int port = family == AF_INET6 ? v6_port : daemon_proc.port;

  pid_t load = spawn_metrics_load(daemon_proc.port, 4, 4.0);
  pid_t racers[3] = {
    spawn_send_and_close(family, port,
                         "DELETE /cache/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n", 4.0),
    spawn_send_and_close(family, port, "DELETE /cache HTTP/1.1\r\nHost: localhost\r\n\r\n", 4.0),
    spawn_send_and_close(family, port,
                         "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n", 4.0),
  };
  for (int i = 0; i < 3; i++)
    cr_expect_eq(wait_child(racers[i]), 0, "racer %d failed", i);
  wait_child(load);
  pause_ms(300); /* the last accepted connections are answered */

  long answered = log_lines_with("access: DELETE /cache", " ms uid=");
  long as_root = log_lines_with("access: DELETE /cache", " ms uid=0") +
                 log_lines_with("access: GET /v1/enrollments/", " ms uid=0") - 1; /* root's own */
  long unknown = flipcached_stat(&daemon_proc, "peer_unknown");
  cr_log_info("%ld DELETEs answered, %ld peers unknown", answered, unknown);
  cr_expect_gt(answered, 100, "the race ran: only %ld DELETEs were answered", answered);
  cr_expect_eq(as_root, 0, "%ld of nobody's requests were taken for root's", as_root);
  cr_expect_eq(log_lines_with("access: DELETE /cache", " 200 "), 0, "nobody purged");
  cr_expect_eq(log_lines_with("access: GET /v1/enrollments/", " 200 "), 1,
               "only root's own request was served an enrollment");
  cr_expect_eq(flipcached_stat(&daemon_proc, "purged"), 0);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 1);
  cr_expect_geq(unknown, 0);
}

Test(boundary, a_client_that_closes_at_once_never_passes_for_root_over_ipv4) {
  race_as_nobody(AF_INET);
}

Test(boundary, a_client_that_closes_at_once_never_passes_for_root_over_ipv6) {
  race_as_nobody(AF_INET6);
}

/* ---- connection slots ------------------------------------------------------------------------ */

static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
static const char PARTIAL_HEAD[] = "GET /healthz HTTP/1.1\r\n"; /* the rest never comes */

/* A child process, as another uid, holding connections; see hold_connections. */
struct holder {
  pid_t pid;
  int go_on;  /* the parent closes it: the child then reports and exits */
  int report; /* the child writes "served refused open closed\n" here */
};

struct holding {
  int served, refused, open, closed;
};

enum hold_kind {
  HOLD_IDLE,       /* each served once, then kept alive doing nothing */
  HOLD_BUSY,       /* each served once, then the start of another head: never idle */
  HOLD_OPEN_FIRST, /* all opened (and accepted) first, then a request on each: a pool warming up */
};

/* A child as `uid` (and gid) that opens n connections one after another. With HOLD_IDLE and
 * HOLD_BUSY it sends HEALTHZ on each and reads its answer (so each is accepted before the next
 * is opened); with HOLD_BUSY it then sends the start of another head. With HOLD_OPEN_FIRST it
 * sends on none until all are open (each given time to be accepted), then HEALTHZ on each in
 * turn, reading each answer; one closed without an answer counts as closed. It holds them
 * until the parent closes go_on, then reports how many were served 200, refused 503, are still
 * open, and were closed by the daemon. */
static void hold_connections(struct holder *holder, uid_t uid, int n, enum hold_kind kind) {
  int go_on[2], report[2];
  cr_assert_eq(pipe(go_on), 0);
  cr_assert_eq(pipe(report), 0);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid != 0) {
    close(go_on[0]);
    close(report[1]);
    *holder = (struct holder){.pid = pid, .go_on = go_on[1], .report = report[0]};
    char ready;
    cr_assert_eq(read(holder->report, &ready, 1), 1, "the holder did not get ready");
    return;
  }
  /* Nothing inherited stays open here: an earlier holder's go_on would never see its end. */
  for (int fd = 3; fd < 1024; fd++)
    if (fd != go_on[0] && fd != report[1])
      close(fd);
  if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
    _exit(100);
  int fds[64];
  struct holding counts = {0};
  if (kind == HOLD_OPEN_FIRST) {
    for (int i = 0; i < n && i < 64; i++) {
      fds[i] = connect_to(AF_INET, daemon_proc.port);
      if (fds[i] < 0)
        _exit(101);
      usleep(20 * 1000); /* accepted (and admitted or refused) before the next */
    }
  }
  for (int i = 0; i < n && i < 64; i++) {
    if (kind != HOLD_OPEN_FIRST)
      fds[i] = connect_to(AF_INET, daemon_proc.port);
    char answer[4096];
    if (fds[i] < 0 || send(fds[i], HEALTHZ, sizeof(HEALTHZ) - 1, MSG_NOSIGNAL) < 0) {
      if (kind != HOLD_OPEN_FIRST)
        _exit(101);
      counts.closed++; /* the daemon closed it before its request */
      close(fds[i]);
      fds[i] = -1;
      continue;
    }
    size_t got = raw_read_response(fds[i], answer, sizeof(answer), 5000);
    if (got > 12 && strncmp(answer, "HTTP/1.1 200", 12) == 0) {
      counts.served++;
      if (kind == HOLD_BUSY) {
        if (send(fds[i], PARTIAL_HEAD, sizeof(PARTIAL_HEAD) - 1, MSG_NOSIGNAL) < 0)
          _exit(102);
        usleep(50 * 1000); /* the daemon, idle otherwise, reads it before the next connect */
      }
    } else {
      counts.refused += got > 12 && strncmp(answer, "HTTP/1.1 503", 12) == 0;
      counts.closed += got == 0 && kind == HOLD_OPEN_FIRST;
      close(fds[i]);
      fds[i] = -1;
    }
  }
  if (write(report[1], "r", 1) != 1)
    _exit(103);
  char byte;
  while (read(go_on[0], &byte, 1) > 0) {
  }
  for (int i = 0; i < n && i < 64; i++) {
    if (fds[i] < 0)
      continue;
    char sink[256];
    ssize_t got = recv(fds[i], sink, sizeof(sink), MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      counts.closed++;
    else
      counts.open++;
  }
  dprintf(report[1], "%d %d %d %d\n", counts.served, counts.refused, counts.open, counts.closed);
  _exit(0);
}

static struct holding release_holder(struct holder *holder) {
  close(holder->go_on);
  char text[64] = "";
  ssize_t got = read(holder->report, text, sizeof(text) - 1);
  close(holder->report);
  cr_assert_eq(wait_child(holder->pid), 0, "the holder failed");
  struct holding counts = {-1, -1, -1, -1};
  cr_assert(got > 0 && sscanf(text, "%d %d %d %d", &counts.served, &counts.refused, &counts.open,
                              &counts.closed) == 4, "holder said: %s", text);
  return counts;
}

/* Round two's proof, with the defaults but max_connections = 20 (a share of 5): nobody's 20
 * idle connections no longer take every slot. Beyond its share each new one closes nobody's own
 * longest idle connection, so nobody holds 5 and root is served. */
Test(boundary, one_users_idle_connections_take_only_its_share) {
  start("max_connections = 20\n", NULL);
  struct holder nobody;
  hold_connections(&nobody, NOBODY_UID, 20, false);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200, "root was not served while nobody held its connections");
  struct holding held = release_holder(&nobody);
  cr_expect_eq(held.served, 20, "each of nobody's connections is served in turn");
  cr_expect_eq(held.open, 5, "nobody keeps its share: %d open", held.open);
  cr_expect_eq(held.closed, 15);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_closed_idle"), 15);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_refused"), 0);
}

/* A pool warming up: nobody opens 12 connections before sending on any, with a share of 5. A
 * connection that has answered nothing is not idle, so none is closed for a newer one (closing
 * such ones for each other closed every connection of a client that opened more than its share
 * at once, wrk -c1000 included, before any was served): the first 5 are served, the other 7
 * refused 503 at once, none closed without an answer. */
Test(boundary, connections_not_yet_served_are_never_closed_for_room) {
  start("max_connections = 20\n", NULL);
  struct holder nobody;
  hold_connections(&nobody, NOBODY_UID, 12, HOLD_OPEN_FIRST);
  struct holding held = release_holder(&nobody);
  cr_expect_eq(held.served, 5, "served %d, refused %d, closed %d", held.served, held.refused,
               held.closed);
  cr_expect_eq(held.refused, 7);
  cr_expect_eq(held.closed, 0, "%d closed without an answer", held.closed);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_closed_idle"), 0);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_refused_per_user"), 7);
}

/* Busy connections (a head under way) are not closed for another: beyond its share, nobody's
 * new connections are refused 503 and counted by reason, while root still connects. */
Test(boundary, beyond_its_share_a_users_busy_connections_make_its_new_ones_503) {
  start("max_connections = 20\nmax_connections_per_user = 4\n", NULL);
  struct holder nobody;
  hold_connections(&nobody, NOBODY_UID, 10, true);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200);
  struct holding held = release_holder(&nobody);
  cr_expect_eq(held.served, 4, "served %d, refused %d", held.served, held.refused);
  cr_expect_eq(held.refused, 6);
  cr_expect_eq(held.open, 4);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_refused_per_user"), 6);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_refused"), 0);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_closed_idle"), 0);
}

/* Every slot taken, all idle: a new connection closes the longest idle one of the user that
 * holds the most (nobody's 6 before 65533's 4), not anyone else's. */
Test(boundary, when_full_the_busiest_users_longest_idle_connection_makes_room) {
  start("max_connections = 10\nmax_connections_per_user = 6\nadmin_users = 65533\n", NULL);
  struct holder nobody, stranger;
  hold_connections(&nobody, NOBODY_UID, 6, false);
  hold_connections(&stranger, 65533, 4, false);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200, "root, no admin here, was refused a slot");
  struct holding of_nobody = release_holder(&nobody), of_stranger = release_holder(&stranger);
  cr_expect_eq(of_nobody.closed, 1, "nobody, the busiest, gave up one: %d", of_nobody.closed);
  cr_expect_eq(of_stranger.closed, 0, "65533 lost %d", of_stranger.closed);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_closed_idle"), 1);
}

/* Every slot taken, none idle: an admin still gets in (the reserve), anyone else is 503. */
Test(boundary, when_full_and_busy_an_admin_still_connects_and_others_are_refused) {
  start("max_connections = 4\nmax_connections_per_user = 4\nadmin_users = root\n", NULL);
  struct holder nobody;
  hold_connections(&nobody, NOBODY_UID, 4, true);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200, "the admin was refused");
  struct http_response response;
  char url[128];
  url_of(url, sizeof(url), "/healthz");
  http_as("--reuid=65533 --regid=65533 --clear-groups", NULL, url, NULL, NULL, &response);
  cr_expect_eq(response.status, 503, "a user who is no admin got a slot beyond max_connections");
  cr_expect(strstr(response.body, "\"code\":\"overloaded\"") != NULL, "%s", response.body);
  http_response_free(&response);
  struct holding held = release_holder(&nobody);
  cr_expect_eq(held.open, 4);
  cr_expect_eq(flipcached_stat(&daemon_proc, "connections_refused"), 1);
}

/* ---- web pages ------------------------------------------------------------------------------- */

/* A page of allow_origins may GET and HEAD enrollments, and nothing else: on every admin route
 * and method, the status routes and the enrollment route's other methods, its request is 403
 * forbidden with no CORS header (the page cannot read the answer, and nothing is done), even
 * when the user behind the browser is root, an admin. */
Test(boundary, a_listed_origin_is_refused_on_every_admin_route_and_method) {
  start("allow_origins = http://localhost:3000\nadmin_users = root\n", NULL);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
  const char *page[] = {"Origin: http://localhost:3000", "Sec-Fetch-Site: same-site", NULL};
  static const struct {
    const char *method, *path;
  } refused[] = {
    {"GET", "/cache"}, {"DELETE", "/cache"}, {"POST", "/cache/warm"},
    {"GET", "/cache/enrollments/" ID}, {"DELETE", "/cache/enrollments/" ID},
    {"PUT", "/cache/enrollments/" ID}, {"GET", "/cache?limit=1"},
    {"GET", "/stats"}, {"GET", "/metrics"}, {"GET", "/healthz"}, {"HEAD", "/stats"},
    {"DELETE", "/v1/enrollments/" ID}, {"POST", "/v1/enrollments/" ID},
    {"PUT", "/v1/enrollments/" ID}, {"OPTIONS", "/v1/enrollments/" ID}, {"GET", "/nowhere"},
    {"PATCH", "/cache"},
  };
  char url[256], value[256];
  size_t n = sizeof(refused) / sizeof(refused[0]);
  for (size_t i = 0; i < n; i++) {
    url_of(url, sizeof(url), refused[i].path);
    http_request(refused[i].method, url, page, &response);
    cr_expect_eq(response.status, 403, "%s %s from a listed page: %ld", refused[i].method,
                 refused[i].path, response.status);
    cr_expect(!http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)),
              "%s %s: a CORS header on a refusal", refused[i].method, refused[i].path);
    if (strcmp(refused[i].method, "HEAD") != 0)
      cr_expect(strstr(response.body, "\"code\":\"forbidden\"") != NULL, "%s", response.body);
    http_response_free(&response);
  }
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_web_page"), (long)n);
  cr_expect_eq(flipcached_stat(&daemon_proc, "purged"), 0, "a page purged");
  cr_expect_eq(flipcached_stat(&daemon_proc, "warm_runs"), 0, "a page started a warm-up");
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 1);

  /* What it may do: GET and HEAD of an enrollment, with CORS. */
  url_of(url, sizeof(url), "/v1/enrollments/" ID);
  http_request("HEAD", url, page, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)) &&
            strcmp(value, "http://localhost:3000") == 0);
  http_response_free(&response);
}

/* A preflight is answered only for what a page may do: GET or HEAD of an enrollment. Asking
 * for another method, or another route, is 403 without CORS headers, so the browser never sends
 * the request. */
Test(boundary, preflights_answer_only_for_what_a_page_may_do) {
  start("allow_origins = http://localhost:3000\n", NULL);
  char url[256], value[256];
  struct http_response response;
  url_of(url, sizeof(url), "/v1/enrollments/" ID);
  const char *get[] = {"Origin: http://localhost:3000", "Access-Control-Request-Method: GET",
                       "Access-Control-Request-Headers: cache-control",
                       "Access-Control-Request-Private-Network: true", NULL};
  http_request("OPTIONS", url, get, &response);
  cr_expect_eq(response.status, 204);
  cr_expect(http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)) &&
            strcmp(value, "http://localhost:3000") == 0, "%s", response.headers);
  cr_expect(http_header(&response, "Access-Control-Allow-Methods", value, sizeof(value)) &&
            strcmp(value, "GET, HEAD") == 0, "%s", response.headers);
  cr_expect(http_header(&response, "Access-Control-Allow-Headers", value, sizeof(value)) &&
            strcmp(value, "Cache-Control") == 0);
  cr_expect(http_header(&response, "Access-Control-Allow-Private-Network", value, sizeof(value)) &&
            strcmp(value, "true") == 0);
  cr_expect(strncmp(response.headers, "HTTP/1.1 204 No Content\r\n", 25) == 0, "%s",
            response.headers);
  http_response_free(&response);

  const char *delete[] = {"Origin: http://localhost:3000", "Access-Control-Request-Method: DELETE",
                          NULL};
  const char *get_only[] = {"Origin: http://localhost:3000", "Access-Control-Request-Method: GET",
                            NULL};
  const char *foreign[] = {"Origin: http://evil.example", "Access-Control-Request-Method: GET",
                           NULL};
  static const char *const paths[] = {"/v1/enrollments/" ID, "/cache", "/cache/enrollments/" ID,
                                      "/stats", "/v1/enrollments/" ID};
  const char *const *asks[] = {delete, get_only, get_only, get_only, foreign};
  for (size_t i = 0; i < 5; i++) {
    url_of(url, sizeof(url), paths[i]);
    http_request("OPTIONS", url, asks[i], &response);
    cr_expect_eq(response.status, 403, "preflight %zu of %s: %ld", i, paths[i], response.status);
    cr_expect(!http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)) &&
                  !http_header(&response, "Access-Control-Allow-Methods", value, sizeof(value)),
              "preflight %zu: %s", i, response.headers);
    http_response_free(&response);
  }
  cr_expect_eq(fake_stat(&fake, "total"), 0, "a preflight went upstream");
}

/* ---- status lines ---------------------------------------------------------------------------- */

/* Each answer's status line says its code and the phrase of the one table (errors.h), on the
 * wire: every status a request can draw from the daemon here. */
Test(boundary, every_status_line_has_its_reason_phrase) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  fake_set_program(&fake, "p1", 3, "00000000", "ok", 0);
  struct daemon_options options = {.token = token,
                                   .extra_server = "allow_origins = http://localhost:3000\n",
                                   .extra_sections = "[warm]\nprogram_ids = p1\n"};
  flipcached_prepare(&daemon_proc, &fake, &options);
  flipcached_launch(&daemon_proc);
  static char long_target[17100] = "GET /"; /* a request line over the 16 KiB head */
  memset(long_target + 5, 'a', 17000);
  strcpy(long_target + 17005, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  char many_fields[4000] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
  for (int i = 0; i < 101; i++)
    strcat(many_fields, "X-A: b\r\n");
  strcat(many_fields, "\r\n");
  const struct {
    const char *request;
    const char *status_line;
  } cases[] = {
    {"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "200 OK"},
    {"POST /cache/warm HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "202 Accepted"},
    {"OPTIONS /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
     "Origin: http://localhost:3000\r\nAccess-Control-Request-Method: GET\r\n\r\n", "204 No Content"},
    {"GET /healthz HTTP/1.1\nHost: localhost\n\n", "400 Bad Request"},
    {"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nOrigin: http://evil.example\r\n\r\n",
     "403 Forbidden"},
    {"GET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "404 Not Found"},
    {"DELETE /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "405 Method Not Allowed"},
    {"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", "421 Misdirected Request"},
    {"GET /v1/enrollments/nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
     "422 Unprocessable Content"},
    {many_fields, "431 Request Header Fields Too Large"},
    {long_target, "414 URI Too Long"},
    {"BREW /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "501 Not Implemented"},
    {"GET /healthz HTTP/2.0\r\nHost: localhost\r\n\r\n", "505 HTTP Version Not Supported"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char answer[8192];
    size_t got = raw_exchange(daemon_proc.port, cases[i].request, strlen(cases[i].request), answer,
                              sizeof(answer));
    char wanted[128];
    snprintf(wanted, sizeof(wanted), "HTTP/1.1 %s\r\n", cases[i].status_line);
    cr_expect(got > 0 && strncmp(answer, wanted, strlen(wanted)) == 0, "case %zu: wanted %s got %.60s",
              i, cases[i].status_line, answer);
  }
}

/* ---- absolute-form targets ------------------------------------------------------------------- */

/* RFC 9112 3.2.2: absolute-form is accepted; its authority is judged as Host is (this daemon's
 * names and loopback are routed like origin-form, any other is 421), and user info is 400. */
Test(boundary, an_absolute_form_target_is_routed_by_its_authority) {
  start(NULL, NULL);
  char request[512], answer[8192];
  static const struct {
    const char *target, *host, *status_line;
  } cases[] = {
    {"http://localhost/healthz", "localhost", "HTTP/1.1 200 OK\r\n"},
    {"http://127.0.0.1:PORT/v1/enrollments/" ID, "evil.example", "HTTP/1.1 200 OK\r\n"},
    {"HTTP://LOCALHOST/v1/enrollments/not-a-uuid", "localhost", "HTTP/1.1 422 "},
    {"http://evil.example/healthz", "localhost", "HTTP/1.1 421 "},
    {"https://localhost/healthz", "localhost", "HTTP/1.1 421 "},
    {"http://user@localhost/healthz", "localhost", "HTTP/1.1 400 "},
    {"http://localhost", "localhost", "HTTP/1.1 404 "},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char target[256];
    const char *port = strstr(cases[i].target, "PORT");
    if (port)
      snprintf(target, sizeof(target), "%.*s%d%s", (int)(port - cases[i].target), cases[i].target,
               daemon_proc.port, port + 4);
    else
      snprintf(target, sizeof(target), "%s", cases[i].target);
    int len = snprintf(request, sizeof(request),
                       "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target,
                       cases[i].host);
    size_t got = raw_exchange(daemon_proc.port, request, (size_t)len, answer, sizeof(answer));
    cr_expect(got > 0 && strncmp(answer, cases[i].status_line, strlen(cases[i].status_line)) == 0,
              "%s: %.60s", target, answer);
  }
  cr_expect_eq(fake_count(&fake, ID), 1, "the absolute-form miss went upstream once");
  cr_expect_eq(log_lines_with("access: GET /v1/enrollments/" ID " 200", "uid=0"), 1,
               "the access log names the origin-form path");
}
