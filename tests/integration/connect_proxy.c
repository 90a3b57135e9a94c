/* flip-connect-proxy: a small HTTP CONNECT proxy for the tests, so that they can see what a proxy
 * sees. Usage: flip-connect-proxy PORT LOGFILE. Each request head is appended to LOGFILE whole
 * (a test then checks that no credential crossed in it); a CONNECT to host:port is tunnelled, any
 * other request is answered 403 and logged with "PLAIN" first. One process per connection. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *log_path;

static void log_head(const char *prefix, const char *head, size_t len) {
  FILE *log = fopen(log_path, "a");
  if (!log)
    return;
  fprintf(log, "%s%.*s\n", prefix, (int)len, head);
  fclose(log);
}

static int connect_to(const char *host, const char *port) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;
  if (getaddrinfo(host, port, &hints, &found) != 0)
    return -1;
  int fd = -1;
  for (struct addrinfo *ai = found; ai && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  return fd;
}

/* Copies bytes both ways until either side closes. */
static void relay(int a, int b) {
  struct pollfd fds[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
  char buffer[16384];
  for (;;) {
    if (poll(fds, 2, 30000) <= 0)
      return;
    for (int i = 0; i < 2; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0 || write(fds[1 - i].fd, buffer, (size_t)n) != n)
        return;
    }
  }
}

static void serve(int client) {
  char head[8192];
  size_t len = 0;
  while (len < sizeof(head) - 1) {
    ssize_t n = read(client, head + len, sizeof(head) - 1 - len);
    if (n <= 0)
      return;
    len += (size_t)n;
    head[len] = '\0';
    if (strstr(head, "\r\n\r\n"))
      break;
  }
  char host[256], port[16];
  if (sscanf(head, "CONNECT %255[^:]:%15[0-9] HTTP/1.", host, port) != 2) {
    log_head("PLAIN ", head, len);
    static const char REFUSED[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (write(client, REFUSED, sizeof(REFUSED) - 1) < 0)
      return;
    return;
  }
  log_head("", head, len);
  int upstream = connect_to(host, port);
  if (upstream < 0) {
    static const char BAD[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    if (write(client, BAD, sizeof(BAD) - 1) < 0)
      return;
    return;
  }
  static const char OK[] = "HTTP/1.1 200 Connection established\r\n\r\n";
  if (write(client, OK, sizeof(OK) - 1) == (ssize_t)(sizeof(OK) - 1))
    relay(client, upstream);
  close(upstream);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: flip-connect-proxy PORT LOGFILE\n");
    return 2;
  }
  log_path = argv[2];
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener, 128) != 0) {
    perror("flip-connect-proxy: listen");
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  for (;;) {
    int client = accept(listener, NULL, NULL);
    if (client < 0)
      continue;
    if (fork() == 0) {
      close(listener);
      serve(client);
      _exit(0);
    }
    close(client);
  }
}
