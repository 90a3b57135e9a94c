#include "peer.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

struct peer_finder {
  int netlink_fd;
  uint32_t sequence;
};

struct peer_finder *peer_finder_new(char *err, size_t err_len) {
  struct peer_finder *finder = calloc(1, sizeof(*finder));
  if (!finder) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  finder->netlink_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (finder->netlink_fd < 0) {
    snprintf(err, err_len, "NETLINK_SOCK_DIAG socket: %s", strerror(errno));
    free(finder);
    return NULL;
  }
  return finder;
}

void peer_finder_free(struct peer_finder *finder) {
  if (!finder)
    return;
  close(finder->netlink_fd);
  free(finder);
}

void peer_of_unix(int fd, struct peer *peer) {
  memset(peer, 0, sizeof(*peer));
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
    return;
  peer->uid_known = peer->pid_known = peer->groups_known = true;
  peer->uid = cred.uid;
  peer->gid = cred.gid;
  peer->pid = cred.pid;
  /* More groups than PEER_MAX_GROUPS: ERANGE, and the call fills nothing; the peer then counts
   * with its primary group only (documented). */
  gid_t groups[PEER_MAX_GROUPS];
  len = sizeof(groups);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
    peer->group_count = len / sizeof(gid_t);
    for (unsigned i = 0; i < peer->group_count; i++)
      peer->groups[i] = groups[i];
  }
}

/* The client socket's states in which its uid is its owner's: connected, or half-closed by the
 * client (shutdown) while it still holds the socket. TIME_WAIT, SYN_RECV, LISTEN and the closing
 * states are not among them. */
#define LIVE_PEER_STATES                                                                           \
  ((1u << TCP_ESTABLISHED) | (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE_WAIT))

/* One exact-match inet_diag request: the client's socket is the one whose source is the peer's
 * address and whose destination is ours. */
struct diag_request {
  struct nlmsghdr header;
  struct inet_diag_req_v2 body;
};

static bool fill_diag_request(int fd, struct diag_request *request) {
  struct sockaddr_storage local, remote;
  socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
  if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0 ||
      getpeername(fd, (struct sockaddr *)&remote, &remote_len) != 0 ||
      local.ss_family != remote.ss_family)
    return false;
  struct inet_diag_req_v2 *body = &request->body;
  body->sdiag_family = (uint8_t)local.ss_family;
  body->sdiag_protocol = IPPROTO_TCP;
  body->idiag_states = LIVE_PEER_STATES;
  body->id.idiag_cookie[0] = body->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (local.ss_family == AF_INET) {
    const struct sockaddr_in *ours = (const struct sockaddr_in *)&local;
    const struct sockaddr_in *theirs = (const struct sockaddr_in *)&remote;
    body->id.idiag_sport = theirs->sin_port;
    body->id.idiag_dport = ours->sin_port;
    memcpy(body->id.idiag_src, &theirs->sin_addr, sizeof(theirs->sin_addr));
    memcpy(body->id.idiag_dst, &ours->sin_addr, sizeof(ours->sin_addr));
  } else if (local.ss_family == AF_INET6) {
    const struct sockaddr_in6 *ours = (const struct sockaddr_in6 *)&local;
    const struct sockaddr_in6 *theirs = (const struct sockaddr_in6 *)&remote;
    body->id.idiag_sport = theirs->sin6_port;
    body->id.idiag_dport = ours->sin6_port;
    memcpy(body->id.idiag_src, &theirs->sin6_addr, sizeof(theirs->sin6_addr));
    memcpy(body->id.idiag_dst, &ours->sin6_addr, sizeof(ours->sin6_addr));
  } else {
    return false;
  }
  request->header.nlmsg_len = sizeof(*request);
  request->header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request->header.nlmsg_flags = NLM_F_REQUEST; /* no NLM_F_DUMP: one socket, looked up by key */
  return true;
}

/* Whether an inet_diag answer is provably the accepted connection's live peer: exactly the
 * four-tuple asked for (not a listener found by the kernel's fallback, whose remote end is
 * zero), in a live state, and still attached to a file (inode != 0). A socket whose process
 * closed it (or exited) is orphaned: the kernel then reports inode 0 and uid 0, in FIN_WAIT or
 * TIME_WAIT, and that uid 0 is nobody's. docs/architecture.md says why this suffices. */
static bool is_live_peer(const struct inet_diag_msg *message, const struct inet_diag_req_v2 *asked) {
  return message->idiag_family == asked->sdiag_family && message->idiag_inode != 0 &&
         message->idiag_state < 32 && (LIVE_PEER_STATES & (1u << message->idiag_state)) &&
         message->id.idiag_sport == asked->id.idiag_sport &&
         message->id.idiag_dport == asked->id.idiag_dport &&
         memcmp(message->id.idiag_src, asked->id.idiag_src, sizeof(asked->id.idiag_src)) == 0 &&
         memcmp(message->id.idiag_dst, asked->id.idiag_dst, sizeof(asked->id.idiag_dst)) == 0;
}

/* Reads the reply to `sequence` without waiting; true with *uid when it names exactly one live
 * peer (is_live_peer). Stale replies (of a query that timed out on an earlier call) are
 * skipped; more than one answer to the query is ambiguous, and no answer. */
static bool read_diag_reply(int netlink_fd, const struct diag_request *request, uint32_t *uid) {
  for (int attempt = 0; attempt < 4; attempt++) {
    union {
      struct nlmsghdr header;
      char bytes[1024];
    } reply;
    ssize_t n = recv(netlink_fd, &reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < (ssize_t)sizeof(struct nlmsghdr))
      return false;
    unsigned answers = 0;
    bool live = false;
    for (struct nlmsghdr *h = &reply.header; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != request->header.nlmsg_seq)
        continue;
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
        return false; /* NLMSG_ERROR: no such socket (another namespace, a remote peer) */
      const struct inet_diag_msg *message = NLMSG_DATA(h);
      answers++;
      live = is_live_peer(message, &request->body);
      *uid = message->idiag_uid;
    }
    if (answers > 0)
      return answers == 1 && live;
  }
  return false;
}

/* Our end of the connection still holds its four-tuple: no other connection can have had it
 * since the accept, so the client end the kernel named is the one that connected to us. */
static bool still_connected(int fd) {
  struct tcp_info info;
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 || len < 1)
    return false;
  return info.tcpi_state == TCP_ESTABLISHED || info.tcpi_state == TCP_CLOSE_WAIT;
}

void peer_of_tcp(struct peer_finder *finder, int fd, struct peer *peer) {
  memset(peer, 0, sizeof(*peer));
  struct diag_request request;
  memset(&request, 0, sizeof(request));
  if (!finder || !fill_diag_request(fd, &request))
    return;
  request.header.nlmsg_seq = ++finder->sequence;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent;
  do
    sent = sendto(finder->netlink_fd, &request, sizeof(request), MSG_DONTWAIT,
                  (struct sockaddr *)&kernel, sizeof(kernel));
  while (sent < 0 && errno == EINTR);
  if (sent != (ssize_t)sizeof(request)) {
    log_debug("peer: inet_diag query not sent: %s", sent < 0 ? strerror(errno) : "short send");
    return;
  }
  uint32_t uid;
  if (read_diag_reply(finder->netlink_fd, &request, &uid) && still_connected(fd)) {
    peer->uid_known = true;
    peer->uid = uid;
  }
}

const char *peer_text(const struct peer *peer, char out[PEER_TEXT_MAX]) {
  if (!peer->uid_known)
    snprintf(out, PEER_TEXT_MAX, "uid=?");
  else if (peer->pid_known)
    snprintf(out, PEER_TEXT_MAX, "uid=%u pid=%d", peer->uid, peer->pid);
  else
    snprintf(out, PEER_TEXT_MAX, "uid=%u", peer->uid);
  return out;
}
