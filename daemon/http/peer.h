/* peer: who is at the other end of a client connection, found once, when it is accepted.
 *
 *   unix socket   -> SO_PEERCRED (uid, gid, pid as the kernel recorded them at connect) and
 *                    SO_PEERGROUPS (the process's supplementary groups)
 *   TCP loopback  -> the uid that owns the client's socket in the kernel's socket table, asked of
 *                    NETLINK_SOCK_DIAG (inet_diag) by its exact four-tuple, as `ss -e` shows it;
 *                    no pid and no groups (access.h then uses the user database's groups)
 *   anything else -> unknown (a remote peer, another network namespace, a failed lookup)
 *
 * Nothing here resolves a name or waits: the netlink query is answered by the kernel within the
 * send, and the reply is read without blocking (no reply means unknown).
 *
 * Pitfall: both answers are in the daemon's user namespace. Under systemd's PrivateUsers=yes every
 * other user would appear as 65534, so the shipped unit does not set it. */
#ifndef FLIPCACHED_PEER_H
#define FLIPCACHED_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_MAX_GROUPS 64 /* supplementary groups kept of a unix peer; more are cut (documented) */

struct peer {
  bool uid_known;
  bool pid_known;      /* unix sockets only */
  bool groups_known;   /* gid and groups: unix sockets only */
  uint32_t uid;
  uint32_t gid;        /* the primary group */
  int32_t pid;
  unsigned group_count;
  uint32_t groups[PEER_MAX_GROUPS];
};

/* The daemon's one NETLINK_SOCK_DIAG socket, opened at start (before any sandbox could refuse
 * it). NULL with err set when it cannot be opened: TCP peers are then unknown. */
struct peer_finder;
struct peer_finder *peer_finder_new(char *err, size_t err_len);
void peer_finder_free(struct peer_finder *finder);

/* Fills *peer for an accepted unix-socket connection. */
void peer_of_unix(int fd, struct peer *peer);
/* Fills *peer for an accepted TCP connection; finder may be NULL (unknown). */
void peer_of_tcp(struct peer_finder *finder, int fd, struct peer *peer);

/* The key of the peer's user, for per-user quotas and fair shares: its uid, or PEER_UNKNOWN_KEY
 * (above every uid) shared by every peer whose uid is unknown. */
#define PEER_UNKNOWN_KEY UINT64_C(0x100000000)
static inline uint64_t peer_user_key(const struct peer *peer) {
  return peer->uid_known ? peer->uid : PEER_UNKNOWN_KEY;
}

/* "uid=1000 pid=4242", "uid=1000" or "uid=?": how the logs name the peer. */
#define PEER_TEXT_MAX 40
const char *peer_text(const struct peer *peer, char out[PEER_TEXT_MAX]);

#endif
