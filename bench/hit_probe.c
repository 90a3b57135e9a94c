/* bench/hit_probe: the worst latency of a cache hit while something else runs. One kept-alive
 * connection asks for one id again and again, each request sent when the previous answer is
 * read whole, until STOP_FILE exists (or SECONDS pass); then it prints
 *
 *   <probes> <worst ms> <p99 ms> <p999 ms> <non-200 answers>
 *
 * The worst is the figure that says whether the event loop ever blocked: a hit costs tens of
 * microseconds, so anything above a millisecond is time the loop spent elsewhere. Not installed.
 *
 *   flipcached-bench-hit-probe PORT ID SECONDS [STOP_FILE]
 *
 * The stream mode sends misses, every id new, at a steady RATE a second for SECONDS on one
 * kept-alive connection (a request when the previous answer is in and its time has come), and
 * prints how many were answered and how many were not 200:
 *
 *   flipcached-bench-hit-probe stream PORT RATE SECONDS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROBES 20000000

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

/* Reads one response (head, then Content-Length bytes); returns its status, or -1 on a close. */
static int read_response(int fd, char *buffer, size_t cap) {
  size_t have = 0;
  char *head_end = NULL;
  while (!head_end) {
    ssize_t got = read(fd, buffer + have, cap - 1 - have);
    if (got <= 0)
      return -1;
    have += (size_t)got;
    buffer[have] = '\0';
    head_end = strstr(buffer, "\r\n\r\n");
  }
  const char *length = strcasestr(buffer, "\r\ncontent-length:");
  size_t body = length ? strtoul(length + 17, NULL, 10) : 0;
  size_t total = (size_t)(head_end + 4 - buffer) + body;
  while (have < total) {
    ssize_t got = read(fd, buffer + have, cap - 1 - have < total - have ? cap - 1 - have : total - have);
    if (got <= 0)
      return -1;
    have += (size_t)got;
  }
  return atoi(buffer + 9);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int stream_misses(int port, double rate, double seconds) {
  static char buffer[1 << 16];
  double start = now_ms(), until = start + seconds * 1e3;
  unsigned base = (unsigned)time(NULL) & 0x0fffffff;
  size_t sent = 0, not_ok = 0;
  int fd = connect_to(port);
  while (now_ms() < until) {
    double due = start + (double)sent * 1e3 / rate;
    while (now_ms() < due) {
      struct timespec pause = {0, 200000}; /* 0.2 ms */
      nanosleep(&pause, NULL);
    }
    char request[256];
    int len = snprintf(request, sizeof(request),
                       "GET /v1/enrollments/%08x-0000-4000-8000-%012zx HTTP/1.1\r\n"
                       "Host: localhost\r\n\r\n", base, sent);
    if (write(fd, request, (size_t)len) != len || read_response(fd, buffer, sizeof(buffer)) != 200)
      not_ok++;
    sent++;
  }
  printf("%zu %zu\n", sent, not_ok);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "stream") == 0)
    return stream_misses(atoi(argv[2]), atof(argv[3]), atof(argv[4]));
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT ID SECONDS [STOP_FILE]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  double until = now_ms() + atof(argv[3]) * 1e3;
  const char *stop_file = argc > 4 ? argv[4] : NULL;
  char request[256];
  int request_len = snprintf(request, sizeof(request),
                             "GET /v1/enrollments/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", argv[2]);
  double *latencies = malloc(sizeof(double) * MAX_PROBES);
  static char buffer[1 << 16];
  size_t probes = 0, not_ok = 0;
  int fd = connect_to(port);
  while (probes < MAX_PROBES && now_ms() < until) {
    if (stop_file && probes % 64 == 0 && access(stop_file, F_OK) == 0)
      break;
    double start = now_ms();
    if (write(fd, request, (size_t)request_len) != request_len) {
      close(fd);
      fd = connect_to(port);
      continue;
    }
    int status = read_response(fd, buffer, sizeof(buffer));
    if (status < 0) { /* the daemon closed the connection: open another, not counted */
      close(fd);
      fd = connect_to(port);
      continue;
    }
    latencies[probes++] = now_ms() - start;
    not_ok += status != 200;
  }
  if (probes == 0) {
    printf("0 0 0 0 0\n");
    return 1;
  }
  qsort(latencies, probes, sizeof(double), by_value);
  printf("%zu %.3f %.3f %.3f %zu\n", probes, latencies[probes - 1], latencies[probes * 99 / 100],
         latencies[probes * 999 / 1000], not_ok);
  free(latencies);
  return 0;
}
