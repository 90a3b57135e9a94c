/* redis_peers: real redis-server peers for the tests (redis_peers.h). */
#include "redis_peers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

redisContext *redis_peer_connect(const struct redis_peer *peer) {
  struct timeval tv = {2, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", peer->port, tv);
  if (!c || c->err) {
    if (c)
      redisFree(c);
    return NULL;
  }
  if (peer->password[0]) {
    redisReply *r = redisCommand(c, "AUTH %s", peer->password);
    if (r)
      freeReplyObject(r);
  }
  return c;
}

redisReply *redis_peer_vcommand(const struct redis_peer *peer, const char *format, va_list ap) {
  redisContext *c = redis_peer_connect(peer);
  if (!c)
    return NULL;
  redisReply *r = redisvCommand(c, format, ap);
  redisFree(c);
  return r;
}

redisReply *redis_peer_command(const struct redis_peer *peer, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  redisReply *r = redis_peer_vcommand(peer, format, ap);
  va_end(ap);
  return r;
}

bool redis_peer_reply_has(const struct redis_peer *peer, const char *part, const char *format,
                          ...) {
  va_list ap;
  va_start(ap, format);
  redisReply *r = redis_peer_vcommand(peer, format, ap);
  va_end(ap);
  bool has = false;
  if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
    has = strstr(r->str, part) != NULL;
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
    has = has || (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, part) == 0);
  if (r)
    freeReplyObject(r);
  return has;
}

/* Forks redis-server with argv, output to NAME.log; waits until it answers PING. */
static void launch(struct redis_peer *peer, const char *const *argv) {
  char log[400];
  snprintf(log, sizeof(log), "%s/%s.log", peer->dir, peer->name);
  peer->pid = fork();
  cr_assert(peer->pid >= 0);
  if (peer->pid == 0) {
    if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
      _exit(126);
    char *copies[32]; /* execvp's argv is not const */
    size_t n = 0;
    for (; argv[n] && n < 31; n++)
      copies[n] = strdup(argv[n]);
    copies[n] = NULL;
    execvp("redis-server", copies);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    redisReply *r = redis_peer_command(peer, "PING");
    bool up = r && r->type == REDIS_REPLY_STATUS;
    if (r)
      freeReplyObject(r);
    if (up)
      return;
    pause_ms(25);
  }
  cr_assert_fail("%s did not start on port %d (see %s)", peer->name, peer->port, log);
}

void redis_peer_restart(struct redis_peer *peer) {
  char port[16], rdb[64];
  snprintf(port, sizeof(port), "%d", peer->port);
  snprintf(rdb, sizeof(rdb), "%s.rdb", peer->name); /* peers share dir: one RDB file each */
  const char *argv[32];
  size_t n = 0;
  if (peer->conf[0]) { /* a sentinel: its (rewritten) configuration says everything */
    argv[n++] = "redis-server";
    argv[n++] = peer->conf;
    argv[n++] = "--sentinel";
  } else {
    const char *fixed[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", peer->dir, "--dbfilename", rdb,
                           "--enable-debug-command", "yes"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
      argv[n++] = fixed[i];
    if (peer->password[0]) {
      argv[n++] = "--requirepass";
      argv[n++] = peer->password;
    }
    for (size_t i = 0; i < peer->arg_count; i++)
      argv[n++] = peer->args[i];
  }
  argv[n] = NULL;
  launch(peer, argv);
  if (peer->conf[0]) {
    /* Sentinel's own clocks, shortened for tests (SENTINEL DEBUG, Redis 7): INFO every second
     * rather than ten (a restarted old master is made a replica 4 publish periods after it
     * reports itself master: 2 s rather than 8 s plus an INFO period); a ping, and so a
     * reconnection, every 200 ms, well inside down-after-milliseconds (a sentinel reconnects at
     * most once a ping period: with 1 s against a down-after of 500 ms it took the master it had
     * just promoted for down, and failed over again to the old one); and no TILT on a loaded
     * machine (by default a 2 s stall of its timer stops it acting for 30 s). */
    redisReply *r = redis_peer_command(peer, "SENTINEL DEBUG info-period 1000 publish-period 500 "
                                             "ping-period 200 tilt-trigger 30000");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "SENTINEL DEBUG refused on port %d",
              peer->port);
    freeReplyObject(r);
  }
}

void redis_peer_start(struct redis_peer *peer, const char *dir, const char *name,
                      const char *const *args) {
  snprintf(peer->dir, sizeof(peer->dir), "%s", dir);
  snprintf(peer->name, sizeof(peer->name), "%s", name);
  if (!peer->port)
    peer->port = free_port();
  peer->conf[0] = '\0';
  peer->arg_count = 0;
  for (size_t i = 0; args && args[i]; i++) {
    cr_assert_lt(i, sizeof(peer->args) / sizeof(peer->args[0]));
    snprintf(peer->args[peer->arg_count++], sizeof(peer->args[0]), "%s", args[i]);
  }
  redis_peer_restart(peer);
}

void redis_peer_start_sentinel(struct redis_peer *peer, const char *dir, const char *name,
                               const char *master_name, int master_port,
                               const char *master_password) {
  snprintf(peer->dir, sizeof(peer->dir), "%s", dir);
  snprintf(peer->name, sizeof(peer->name), "%s", name);
  if (!peer->port)
    peer->port = free_port();
  snprintf(peer->conf, sizeof(peer->conf), "%s/%s.conf", dir, name);
  FILE *f = fopen(peer->conf, "w");
  cr_assert(f);
  fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\n"
             "sentinel monitor %s 127.0.0.1 %d 2\n"
             "sentinel down-after-milliseconds %s 1000\n"
             "sentinel failover-timeout %s 2000\n",
          peer->port, dir, master_name, master_port, master_name, master_name);
  if (master_password && master_password[0])
    fprintf(f, "sentinel auth-pass %s %s\n", master_name, master_password);
  if (peer->password[0])
    fprintf(f, "requirepass %s\nsentinel sentinel-pass %s\n", peer->password, peer->password);
  fclose(f);
  redis_peer_restart(peer);
}

void redis_peer_kill(struct redis_peer *peer) {
  if (peer->pid > 0) {
    kill(peer->pid, SIGKILL);
    waitpid(peer->pid, NULL, 0);
  }
  peer->pid = 0;
}

/* One RESP command from buf[*at..len) into argv (at most 4 arguments kept, each NUL-terminated
 * in place); false when it is not complete yet. */
static bool next_command(char *buf, size_t len, size_t *at, char *argv[4], size_t *argc) {
  size_t i = *at;
  if (i >= len || buf[i] != '*')
    return false;
  char *end;
  long n = strtol(buf + i + 1, &end, 10);
  if (end >= buf + len - 1 || end[0] != '\r')
    return false;
  i = (size_t)(end - buf) + 2;
  *argc = 0;
  for (long k = 0; k < n; k++) {
    if (i >= len || buf[i] != '$')
      return false;
    long arg_len = strtol(buf + i + 1, &end, 10);
    if (end >= buf + len - 1 || end[0] != '\r')
      return false;
    i = (size_t)(end - buf) + 2;
    if (i + (size_t)arg_len + 2 > len)
      return false;
    if (*argc < 4)
      argv[(*argc)++] = buf + i;
    buf[i + (size_t)arg_len] = '\0';
    i += (size_t)arg_len + 2;
  }
  *at = i;
  return true;
}

static void liar_serve(int fd, int named_port) {
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t got = read(fd, buf + len, sizeof(buf) - len - 1);
    if (got <= 0)
      _exit(0);
    len += (size_t)got;
    size_t at = 0;
    char *argv[4];
    size_t argc;
    while (next_command(buf, len, &at, argv, &argc)) {
      char out[256];
      int n;
      if (argc >= 1 && strcasecmp(argv[0], "AUTH") == 0) {
        n = snprintf(out, sizeof(out), "+OK\r\n");
      } else if (argc >= 2 && strcasecmp(argv[0], "SENTINEL") == 0) {
        char port[16];
        snprintf(port, sizeof(port), "%d", named_port);
        n = snprintf(out, sizeof(out), "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n", strlen(port), port);
      } else if (argc >= 2 && strcasecmp(argv[0], "SUBSCRIBE") == 0) {
        n = snprintf(out, sizeof(out), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n",
                     strlen(argv[1]), argv[1]);
      } else {
        n = snprintf(out, sizeof(out), "-ERR unknown command\r\n");
      }
      if (write(fd, out, (size_t)n) != n)
        _exit(0);
    }
    memmove(buf, buf + at, len - at);
    len -= at;
  }
}

pid_t redis_peer_start_liar(int *port, int named_port) {
  if (!*port)
    *port = free_port();
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert(listener >= 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
  cr_assert_eq(listen(listener, 64), 0);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    signal(SIGCHLD, SIG_IGN); /* the connections' children are reaped by the kernel */
    for (;;) {
      int fd = accept(listener, NULL, NULL);
      if (fd < 0)
        continue;
      if (fork() == 0) {
        close(listener);
        liar_serve(fd, named_port);
      }
      close(fd);
    }
  }
  close(listener);
  return pid;
}

void fleet_random_key_hex(char out[65]) {
  unsigned char raw[32];
  fill_random(raw, sizeof(raw));
  for (size_t i = 0; i < sizeof(raw); i++)
    snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

void write_private_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
  chmod(path, 0600);
}

void fleet_write_shared_key(const char *dir, char path[320], char text[80]) {
  fleet_random_key_hex(text);
  strcat(text, "\n");
  snprintf(path, 320, "%s/shared-key", dir);
  write_private_file(path, text);
}
