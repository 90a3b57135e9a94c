/* bench/slow_upstream: the upstream of bench/run's cold-miss scenario. It answers
 * GET /v1/enrollments/{id} (with the right Bearer token) with the enrollment of BODY_FILE, its id
 * replaced by the one asked for, DELAY_MS after the request arrived; 401 without the token, 404
 * for anything else. Kept-alive connections, one request at a time each (what nginx, flipcached
 * and wrk send). Not a test double: tests/integration/fake_upstream.c is. It exists because the fake's evhttp
 * spends about 5 ms of CPU on each wave of 256 delayed answers on a 2-core machine, which made the
 * scenario measure the fake more than the proxies in front of it. Not installed.
 *
 *   flipcached-bench-slow-upstream PORT TOKEN_FILE BODY_FILE DELAY_MS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ID_LEN 36
#define ID_TEMPLATE "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define PREFIX "GET /v1/enrollments/"

static struct event_base *base;
static char authorization[4200];
static char *body;
static size_t body_len, body_id_at;
static struct timeval delay;

struct connection {
  int fd;
  struct event *read_event, *timer;
  char in[8192];
  size_t in_len;
  char id[ID_LEN + 1];
  int status; /* of the answer the timer will send; 0: none pending */
  char out[16384];
  size_t out_len, out_sent;
  struct event *write_event;
};

static void connection_free(struct connection *c) {
  event_free(c->read_event);
  event_free(c->timer);
  event_free(c->write_event);
  close(c->fd);
  free(c);
}

static void flush(struct connection *c) {
  while (c->out_sent < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_sent += (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      event_add(c->write_event, NULL);
      return;
    } else {
      connection_free(c);
      return;
    }
  }
  c->out_len = c->out_sent = 0;
  event_del(c->write_event);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  flush(arg);
}

static void on_due(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct connection *c = arg;
  int head;
  if (c->status == 200) {
    head = snprintf(c->out, sizeof(c->out),
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    body_len);
    memcpy(c->out + head, body, body_len);
    memcpy(c->out + head + body_id_at, c->id, ID_LEN);
    c->out_len = (size_t)head + body_len;
  } else {
    c->out_len = (size_t)snprintf(c->out, sizeof(c->out),
                                  "HTTP/1.1 %d x\r\nContent-Length: 0\r\n\r\n", c->status);
  }
  c->status = 0;
  flush(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct connection *c = arg;
  ssize_t n = recv(fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    connection_free(c);
    return;
  }
  c->in_len += (size_t)n;
  c->in[c->in_len] = '\0';
  char *end = strstr(c->in, "\r\n\r\n");
  if (!end) {
    if (c->in_len == sizeof(c->in) - 1)
      connection_free(c);
    return;
  }
  size_t head_len = (size_t)(end + 4 - c->in);
  c->status = 404;
  if (strncmp(c->in, PREFIX, strlen(PREFIX)) == 0 && c->in[strlen(PREFIX) + ID_LEN] == ' ') {
    memcpy(c->id, c->in + strlen(PREFIX), ID_LEN);
    end[2] = '\0'; /* keep the last field's CRLF: the token is matched with both */
    c->status = strstr(c->in, authorization) ? 200 : 401;
  }
  memmove(c->in, c->in + head_len, c->in_len - head_len);
  c->in_len -= head_len;
  evtimer_add(c->timer, &delay);
}

static void on_acceptable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  (void)arg;
  for (int i = 0; i < 64; i++) {
    int client = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0)
      return;
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct connection *c = calloc(1, sizeof(*c));
    c->fd = client;
    c->read_event = event_new(base, client, EV_READ | EV_PERSIST, on_readable, c);
    c->write_event = event_new(base, client, EV_WRITE | EV_PERSIST, on_writable, c);
    c->timer = evtimer_new(base, on_due, c);
    event_add(c->read_event, NULL);
  }
}

/* Reads up to cap - 1 bytes of path into text, NUL-terminated; false when it cannot be read. */
static bool read_file(const char *path, char *text, size_t cap, size_t *len) {
  FILE *file = fopen(path, "r");
  if (!file)
    return false;
  *len = fread(text, 1, cap - 1, file);
  fclose(file);
  text[*len] = '\0';
  return true;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s PORT TOKEN_FILE BODY_FILE DELAY_MS\n", argv[0]);
    return 2;
  }
  static char token[4097], text[8192];
  size_t token_len;
  if (!read_file(argv[2], token, sizeof(token), &token_len)) {
    fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[2]);
    return 1;
  }
  token[strcspn(token, "\r\n")] = '\0';
  snprintf(authorization, sizeof(authorization), "\r\nAuthorization: Bearer %s\r\n", token);
  char *id_at = read_file(argv[3], text, sizeof(text), &body_len) ? strstr(text, ID_TEMPLATE) : NULL;
  if (!id_at || body_len > 8000) {
    fprintf(stderr, "%s: %s is not an enrollment with the id %s\n", argv[0], argv[3], ID_TEMPLATE);
    return 1;
  }
  body = text;
  body_id_at = (size_t)(id_at - text);
  long delay_ms = atol(argv[4]);
  delay.tv_sec = delay_ms / 1000;
  delay.tv_usec = (delay_ms % 1000) * 1000;

  signal(SIGPIPE, SIG_IGN);
  struct event_config *config = event_config_new();
  event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
  base = event_base_new_with_config(config);
  event_config_free(config);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) {
    fprintf(stderr, "%s: cannot listen on port %s\n", argv[0], argv[1]);
    return 1;
  }
  struct event *accept_event = event_new(base, fd, EV_READ | EV_PERSIST, on_acceptable, NULL);
  event_add(accept_event, NULL);
  event_base_dispatch(base);
  return 0;
}
