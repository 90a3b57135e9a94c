/* Connection-level limits of the front end, on raw sockets: max_connections with a polite 503,
 * the request_timeout deadline of a head (slowloris) and of an answer nobody reads, idle
 * keep-alive connections, HTTP/1.0 and half-closed clients. Short timeouts, never long sleeps. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static void start_with_server(const char *server_lines) {
  struct daemon_options options = {.extra_server = server_lines};
  fixture_start(&fake, &daemon_proc, &options);
}

TestSuite(connections, .fini = stop_all, .timeout = 60);

static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/* A kept-alive connection the daemon has certainly accepted: it answered on it. */
static int open_served_connection(void) {
  int fd = raw_connect(daemon_proc.port);
  cr_assert_eq(write(fd, HEALTHZ, sizeof(HEALTHZ) - 1), (ssize_t)(sizeof(HEALTHZ) - 1));
  char answer[4096];
  cr_assert(raw_read_response(fd, answer, sizeof(answer), 5000) > 0, "no answer");
  cr_assert(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answered %.40s", answer);
  return fd;
}

/* The kept connections are busy (a head under way: nothing idle could be closed to make room),
 * and root is no admin here (an admin would have the reserve beyond max_connections). */
Test(connections, beyond_max_connections_a_503_then_a_close) {
  start_with_server("max_connections = 3\nmax_connections_per_user = 3\nadmin_users = 65533\n");
  static const char partial[] = "GET /healthz HTTP/1.1\r\n";
  int kept[3];
  for (int i = 0; i < 3; i++) {
    kept[i] = open_served_connection();
    cr_assert_eq(write(kept[i], partial, sizeof(partial) - 1), (ssize_t)(sizeof(partial) - 1));
  }
  pause_ms(100); /* the daemon has read each partial head */

  int extra = raw_send(daemon_proc.port, HEALTHZ, sizeof(HEALTHZ) - 1);
  char answer[4096];
  raw_read_all(extra, answer, sizeof(answer)); /* until the daemon closes it */
  close(extra);
  cr_expect(strncmp(answer, "HTTP/1.1 503", 12) == 0, "answered %.40s", answer);
  cr_expect(strstr(answer, "\r\nRetry-After: 1\r\n") != NULL, "no Retry-After: %s", answer);
  cr_expect(strstr(answer, "\r\nConnection: close\r\n") != NULL);
  cr_expect(strstr(answer, "\"code\":\"overloaded\"") != NULL, "not the error shape: %s", answer);

  /* One kept connection closes: its slot is free again, and the stats say what happened. Until
   * the daemon has read that close, asking for /stats is refused too, and counted. The one user
   * here holds every slot, so its refusals count by that reason, the user's share. */
  close(kept[0]);
  long refused = -1, refused_full = -1, refused_meanwhile = 0;
  char url[128];
  url_of(url, sizeof(url), "/stats");
  for (int attempt = 0; attempt < 50 && refused < 0; attempt++) {
    struct http_response response;
    http_get(url, &response);
    if (response.status == 200) {
      refused = json_field(response.body, "connections_refused_per_user");
      refused_full = json_field(response.body, "connections_refused");
    } else {
      refused_meanwhile++;
      pause_ms(50);
    }
    http_response_free(&response);
  }
  cr_expect_eq(refused, 1 + refused_meanwhile, "refused %ld, meanwhile %ld", refused,
               refused_meanwhile);
  cr_expect_eq(refused_full, 0);
  cr_expect_geq(flipcached_stat(&daemon_proc, "connections_accepted"), 5);
  close(kept[1]);
  close(kept[2]);
}

Test(connections, a_trickled_head_is_cut_at_request_timeout) {
  start_with_server("request_timeout = 1\n");
  int fd = raw_connect(daemon_proc.port);
  const char head[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
  cr_assert_eq(write(fd, head, sizeof(head) - 1), (ssize_t)(sizeof(head) - 1));
  /* A byte every 100 ms: each one keeps an idle timer alive, not the head's deadline. Ten
   * seconds of trickle would finish the head; the daemon must cut it long before. */
  bool cut = false;
  for (int i = 0; i < 100 && !cut; i++) {
    pause_ms(100);
    cut = send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1;
    char peek;
    cut = cut || recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
  }
  cr_expect(cut, "the head was still being read after 10 s");
  char answer[4096];
  raw_read_all(fd, answer, sizeof(answer));
  close(fd);
  cr_expect(strncmp(answer, "HTTP/1.1 408", 12) == 0, "answered %.40s", answer);
  cr_expect_eq(fake_stat(&fake, "total"), 0, "nothing went upstream");
  cr_expect_eq(flipcached_stat(&daemon_proc, "request_timeouts"), 1);
}

Test(connections, an_idle_keep_alive_connection_is_closed_after_idle_timeout) {
  start_with_server("idle_timeout = 1\n");
  int fd = open_served_connection();
  cr_expect(raw_wait_closed(fd, 5000), "still open 5 s after a 1 s idle timeout");
  close(fd);
}

/* A client that sends requests but never reads the answers: once they stop fitting in the
 * socket, the daemon stops reading from it and drops it at request_timeout. */
Test(connections, a_client_that_never_reads_its_answers_is_dropped) {
  start_with_server("request_timeout = 1\n");
  int fd = raw_connect(daemon_proc.port);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  const char metrics[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  static char batch[65536];
  size_t per_batch = sizeof(batch) / (sizeof(metrics) - 1), batch_len = 0;
  for (size_t i = 0; i < per_batch; i++, batch_len += sizeof(metrics) - 1)
    memcpy(batch + batch_len, metrics, sizeof(metrics) - 1);
  /* Requests until the socket takes no more (the daemon stopped reading), or 256 MiB. */
  size_t sent = 0;
  while (sent < ((size_t)256 << 20)) {
    ssize_t n = send(fd, batch, batch_len, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    sent += (size_t)n;
  }
  cr_expect_lt(sent, (size_t)256 << 20, "the daemon read 256 MiB of requests nobody took answers for");
  pause_ms(2500); /* request_timeout and a sweep */
  cr_expect(raw_wait_closed(fd, 5000), "still open");
  close(fd);
  cr_expect_eq(flipcached_healthz_status(&daemon_proc), 200, "the daemon stopped serving");
}

Test(connections, http_1_0_is_closed_unless_it_asks_for_keep_alive) {
  start_with_server(NULL);
  const char plain[] = "GET /healthz HTTP/1.0\r\n\r\n";
  char answer[4096];
  raw_exchange(daemon_proc.port, plain, sizeof(plain) - 1, answer, sizeof(answer));
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answered %.40s", answer);
  cr_expect(strstr(answer, "\r\nConnection: close\r\n") != NULL);

  const char kept[] = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  int fd = raw_connect(daemon_proc.port);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(write(fd, kept, sizeof(kept) - 1), (ssize_t)(sizeof(kept) - 1));
    cr_assert(raw_read_response(fd, answer, sizeof(answer), 5000) > 0, "request %d unanswered", i);
    cr_expect(strstr(answer, "\r\nConnection: keep-alive\r\n") != NULL, "%s", answer);
  }
  close(fd);
}

/* A client that sends its request and shuts its writing side still gets the answer, and the
 * daemon waits for it without spinning: EOF stays readable, so reading must stop until then. */
Test(connections, a_half_closed_client_still_gets_its_answer) {
  start_with_server(NULL);
  fake_set_mode(&fake, ID, "ok", 1000);
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  long cpu_before_ms = proc_cpu_ms(daemon_proc.pid);
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  shutdown(fd, SHUT_WR);
  char answer[8192];
  raw_read_all(fd, answer, sizeof(answer));
  close(fd);
  long cpu_used_ms = proc_cpu_ms(daemon_proc.pid) - cpu_before_ms;
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answered %.40s", answer);
  cr_expect(strstr(answer, "\"id\":\"" ID "\"") != NULL);
  /* CPU time, not a duration: waiting costs ~nothing; a loop reading EOF again and again for
   * the upstream's second takes most of a core. */
  cr_expect_geq(cpu_before_ms, 0);
  cr_expect_lt(cpu_used_ms, 400, "the daemon used %ld ms of CPU while the answer was awaited",
               cpu_used_ms);
}

/* Every answer carries Date (RFC 9110 6.6.1); HEAD (what health checkers send) is allowed on the
 * status routes and says GET's Content-Length, with no body. */
Test(connections, head_and_date) {
  start_with_server(NULL);
  const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  char answer[4096];
  raw_exchange(daemon_proc.port, head, sizeof(head) - 1, answer, sizeof(answer));
  cr_expect(strncmp(answer, "HTTP/1.1 200 ", 13) == 0, "HEAD /healthz answered %.40s", answer);
  cr_expect(strstr(answer, "\r\nDate: ") != NULL);
  const char *end = strstr(answer, "\r\n\r\n");
  cr_assert_not_null(end);
  cr_expect_eq(end[4], '\0', "HEAD got a body: %s", end + 4);
  const char *length = strstr(answer, "\r\nContent-Length: ");
  cr_assert_not_null(length);
  cr_expect_gt(atol(length + 18), 0);
}

/* A pipelined request behind one answered by a shared fetch starts after that fetch is done: it
 * is not collapsed into a fetch that has already answered (a new fetch serves it). */
Test(connections, a_pipelined_request_behind_a_collapsed_one_does_not_join_a_finished_fetch) {
  start_with_server(NULL);
  fake_set_mode(&fake, ID, "500", 300);
  const char one[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int first = raw_send(daemon_proc.port, one, sizeof(one) - 1);
  pause_ms(100); /* the fetch is under way */
  const char two[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  int second = raw_send(daemon_proc.port, two, sizeof(two) - 1);
  char answer[8192];
  cr_assert(raw_read_response(first, answer, sizeof(answer), 5000) > 0);
  cr_expect(strncmp(answer, "HTTP/1.1 502", 12) == 0, "answered %.40s", answer);
  close(first);
  raw_read_all(second, answer, sizeof(answer));
  close(second);
  const char *second_answer = strstr(answer + 1, "HTTP/1.1 ");
  cr_assert_not_null(second_answer, "one answer only: %s", answer);
  const char *first_status = strstr(answer, "Cache-Status: ");
  cr_expect(first_status && first_status < second_answer && strstr(first_status, "collapsed"),
            "the first was not collapsed: %s", answer);
  const char *second_status = strstr(second_answer, "Cache-Status: ");
  cr_assert_not_null(second_status);
  size_t line = strcspn(second_status, "\r");
  cr_expect(memmem(second_status, line, "collapsed", 9) == NULL, "the second: %.*s", (int)line,
            second_status);
  cr_expect_eq(fake_count(&fake, ID), 2, "a fetch each");
}
