/* redis_peers: real redis-server processes for the integration tests, as a Redis or as a Redis
 * Sentinel (redis-server --sentinel), on loopback ports; and hiredis's blocking client to look
 * at them. Every helper asserts: a peer that does not start fails the test naming its log. */
#ifndef FLIPCACHED_TEST_REDIS_PEERS_H
#define FLIPCACHED_TEST_REDIS_PEERS_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

struct redis_peer {
  pid_t pid;             /* 0 while not running */
  int port;
  char dir[256];         /* its working directory (shared with other peers): logs, configs */
  char name[32];         /* file names in dir: NAME.log, NAME.conf */
  char password[64];     /* its requirepass, used by redis_peer_command; "" : none */
  char conf[320];        /* a sentinel's configuration file (it rewrites it) */
  char args[8][128];     /* the extra redis-server arguments it was started with, for a restart */
  size_t arg_count;
};

/* Starts a Redis on peer->port (a free one when 0) in dir, with --requirepass peer->password when
 * set, and the extra arguments (NULL-terminated, at most 8; e.g. "--replicaof", "127.0.0.1 7001");
 * returns once it answers PING. */
void redis_peer_start(struct redis_peer *peer, const char *dir, const char *name,
                      const char *const *args);
/* Starts it again, as it was (same port, same arguments). */
void redis_peer_restart(struct redis_peer *peer);
/* Starts a Sentinel monitoring master_name at 127.0.0.1:master_port (quorum 2, down after 500 ms,
 * failover-timeout 2000 ms); master_password: the data nodes' requirepass ("" or NULL: none);
 * peer->password set: the sentinel's own requirepass (and the one it gives other sentinels). */
void redis_peer_start_sentinel(struct redis_peer *peer, const char *dir, const char *name,
                               const char *master_name, int master_port,
                               const char *master_password);
/* SIGKILL and reap; nothing when not running. */
void redis_peer_kill(struct redis_peer *peer);
/* A connection (AUTH done), or NULL when nothing answers. */
redisContext *redis_peer_connect(const struct redis_peer *peer);
/* One command on a fresh connection; the reply (free it), or NULL when nothing answers. */
redisReply *redis_peer_command(const struct redis_peer *peer, const char *format, ...);
redisReply *redis_peer_vcommand(const struct redis_peer *peer, const char *format, va_list ap);
/* Whether the command's reply is a string or status containing `part` (or, for an array, any
 * of its first level's strings equal to it). */
bool redis_peer_reply_has(const struct redis_peer *peer, const char *part, const char *format, ...);

/* A sentinel that lies: on port (a free one when 0; set on return), it answers every
 * SENTINEL get-master-addr-by-name with 127.0.0.1:named_port, AUTH with +OK and SUBSCRIBE as a
 * sentinel does, then says nothing. A process of its own (a child per connection); its pid. */
pid_t redis_peer_start_liar(int *port, int named_port);

/* flipcached's [shared] key_file: a new random key written to DIR/shared-key (0600); its path
 * into path and the file's text (the key and a newline) into text. */
void fleet_write_shared_key(const char *dir, char path[320], char text[80]);
/* A new random shared key, 64 hex digits. */
void fleet_random_key_hex(char out[65]);
/* text written to path, mode 0600 (a key or password file). */
void write_private_file(const char *path, const char *text);

#endif
