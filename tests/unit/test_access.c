/* access: parsing the lists, the rights of a peer under a policy (with an injected user
 * database), and the Host, Origin and Sec-Fetch-Site rules. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "http1.h"
#include "peer.h"

/* A resolver that knows alice (1001), bob (1002) and the group staff (50). */
static bool resolve(const char *name, uint32_t *id, void *arg) {
  (void)arg;
  static const struct {
    const char *name;
    uint32_t id;
  } known[] = {{"alice", 1001}, {"bob", 1002}, {"staff", 50}};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i].name, name) == 0)
      return (*id = known[i].id), true;
  return false;
}

static const char *parse_ids(const char *text, struct id_list *out) {
  static char problem[200];
  return access_parse_ids(text, resolve, NULL, out, problem, sizeof(problem));
}

Test(access_lists, names_ids_and_star) {
  struct id_list list;
  cr_assert_null(parse_ids("alice 1500  bob\t0", &list));
  cr_expect(!list.any);
  cr_assert_eq(list.count, 4);
  cr_expect_eq(list.ids[0], 1001);
  cr_expect_eq(list.ids[1], 1500);
  cr_expect_eq(list.ids[2], 1002);
  cr_expect_eq(list.ids[3], 0);
  cr_assert_null(parse_ids("*", &list));
  cr_expect(list.any);
  cr_assert_null(parse_ids("", &list));
  cr_expect(!list.any && list.count == 0, "empty admits nobody");
  cr_assert_null(parse_ids("alice alice 1001", &list));
  cr_expect_eq(list.count, 1, "the same id said three ways is kept once");
}

Test(access_lists, a_name_that_does_not_exist_or_a_stray_character_is_refused) {
  struct id_list list;
  const char *problem = parse_ids("alice mallory", &list);
  cr_assert_not_null(problem);
  cr_expect_str_eq(problem, "'mallory' does not exist");
  const char *bad[] = {"alice,bob", "al*ce", "-1", "4294967295", "99999999999", "alice;", "a/b",
                       "**x", "-alice"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_not_null(parse_ids(bad[i], &list), "'%s' was accepted", bad[i]);
}

Test(access_lists, more_than_64_entries_are_refused) {
  char text[1024] = "";
  for (int i = 0; i < 65; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "%d ", 2000 + i);
  struct id_list list;
  cr_expect_not_null(parse_ids(text, &list));
  text[strlen(text) - 5] = '\0'; /* 64 */
  cr_expect_null(parse_ids(text, &list));
  cr_expect_eq(list.count, 64);
}

Test(access_lists, the_system_resolvers_know_root) {
  uint32_t id = 99;
  cr_expect(access_resolve_user("root", &id, NULL) && id == 0);
  cr_expect(access_resolve_group("root", &id, NULL) && id == 0);
  cr_expect(!access_resolve_user("no-such-user-flipcached", &id, NULL));
}

Test(access_lists, hosts_and_origins) {
  struct name_list names;
  char problem[200];
  cr_assert_null(access_parse_hosts("Flip.Internal 10.0.0.5 [fe80::1]", &names, problem,
                                    sizeof(problem)));
  cr_assert_eq(names.count, 3);
  cr_expect_str_eq(names.names[0], "flip.internal", "kept in lower case");
  const char *bad_hosts[] = {"flip.internal:8750", "http://flip", "a_b", "[zz]", "-x"};
  for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++)
    cr_expect_not_null(access_parse_hosts(bad_hosts[i], &names, problem, sizeof(problem)), "%s",
                       bad_hosts[i]);
  cr_assert_null(access_parse_origins("http://localhost:3000 HTTPS://Dash.Example", &names,
                                      problem, sizeof(problem)));
  cr_expect_eq(names.count, 2);
  cr_expect_str_eq(names.names[1], "https://dash.example");
  const char *bad_origins[] = {"*", "null", "localhost:3000", "http://localhost:3000/",
                               "http://localhost:", "http://localhost:123456", "ftp://x",
                               "http://"};
  for (size_t i = 0; i < sizeof(bad_origins) / sizeof(bad_origins[0]); i++)
    cr_expect_not_null(access_parse_origins(bad_origins[i], &names, problem, sizeof(problem)),
                       "%s", bad_origins[i]);
}

/* ---- rights ---------------------------------------------------------------------------------- */

/* The user database: carol (1003) has staff (50) as her primary group; dave (1004) is listed
 * as a member of staff. */
static void each_member(const uint32_t *gids, size_t gid_count, access_member_fn found,
                        void *found_arg, void *arg) {
  (void)arg;
  for (size_t i = 0; i < gid_count; i++) {
    if (gids[i] == 50) {
      found(1003, 50, found_arg);
      found(1004, 50, found_arg);
    }
  }
}

static struct access_policy *policy_of(const char *allow_users, const char *allow_groups,
                                       const char *admin_users, const char *admin_groups) {
  static struct id_list lists[4];
  cr_assert_null(parse_ids(allow_users, &lists[0]));
  cr_assert_null(parse_ids(allow_groups, &lists[1]));
  cr_assert_null(parse_ids(admin_users, &lists[2]));
  cr_assert_null(parse_ids(admin_groups, &lists[3]));
  struct access_lists given = {&lists[0], &lists[1], &lists[2], &lists[3]};
  struct access_policy *policy = access_policy_new(&given, each_member, NULL);
  cr_assert_not_null(policy);
  return policy;
}

static struct peer tcp_peer(uint32_t uid) {
  return (struct peer){.uid_known = true, .uid = uid};
}

static struct peer unix_peer(uint32_t uid, uint32_t gid, uint32_t group) {
  struct peer peer = {.uid_known = true, .pid_known = true, .groups_known = true, .uid = uid,
                      .gid = gid, .pid = 42};
  if (group) {
    peer.groups[0] = group;
    peer.group_count = 1;
  }
  return peer;
}

Test(access_rights, star_admits_everyone_even_the_unknown) {
  struct access_policy *policy = policy_of("*", "", "0", "");
  struct peer unknown = {0}, alice = tcp_peer(1001), root = tcp_peer(0);
  cr_expect_eq(access_rights(policy, &unknown), ACCESS_USE);
  cr_expect_eq(access_rights(policy, &alice), ACCESS_USE);
  cr_expect_eq(access_rights(policy, &root), ACCESS_USE | ACCESS_ADMIN);
  access_policy_free(policy);
}

Test(access_rights, an_unknown_peer_is_never_an_admin_even_by_star) {
  struct access_policy *policy = policy_of("0", "", "*", "");
  struct peer unknown = {0}, alice = tcp_peer(1001);
  cr_expect_eq(access_rights(policy, &unknown), ACCESS_USE,
               "admin_users = * lets the unknown peer use the enrollment route, not /cache");
  cr_expect_eq(access_rights(policy, &alice), ACCESS_USE | ACCESS_ADMIN);
  access_policy_free(policy);
  policy = policy_of("0", "", "", "*");
  cr_expect_eq(access_rights(policy, &unknown), ACCESS_USE, "admin_groups = * neither");
  access_policy_free(policy);
}

Test(access_rights, named_users_only_and_the_unknown_is_refused) {
  struct access_policy *policy = policy_of("alice", "", "0", "");
  struct peer unknown = {0}, alice = tcp_peer(1001), bob = tcp_peer(1002);
  cr_expect_eq(access_rights(policy, &unknown), 0);
  cr_expect_eq(access_rights(policy, &alice), ACCESS_USE);
  cr_expect_eq(access_rights(policy, &bob), 0);
  struct peer root_unix = unix_peer(0, 0, 0);
  cr_expect_eq(access_rights(policy, &root_unix), ACCESS_USE | ACCESS_ADMIN,
               "an admin may use the enrollment route too");
  access_policy_free(policy);
}

Test(access_rights, group_members_by_the_database_on_tcp_and_by_the_process_on_unix) {
  struct access_policy *policy = policy_of("", "staff", "0", "");
  struct peer carol = tcp_peer(1003), dave = tcp_peer(1004), bob = tcp_peer(1002);
  cr_expect_eq(access_rights(policy, &carol), ACCESS_USE, "a primary group counts");
  cr_expect_eq(access_rights(policy, &dave), ACCESS_USE, "a member list counts");
  cr_expect_eq(access_rights(policy, &bob), 0);
  struct peer bob_holding_staff = unix_peer(1002, 1002, 50);
  struct peer bob_primary_staff = unix_peer(1002, 50, 0);
  struct peer bob_unix = unix_peer(1002, 1002, 0);
  struct peer dave_unix = unix_peer(1004, 1004, 0);
  cr_expect_eq(access_rights(policy, &bob_holding_staff), ACCESS_USE);
  cr_expect_eq(access_rights(policy, &bob_primary_staff), ACCESS_USE);
  cr_expect_eq(access_rights(policy, &bob_unix), 0);
  cr_expect_eq(access_rights(policy, &dave_unix), ACCESS_USE,
               "the database's members count on the unix socket too");
  access_policy_free(policy);
}

Test(access_rights, admin_groups) {
  struct access_policy *policy = policy_of("", "", "", "staff");
  struct peer carol = tcp_peer(1003), root = tcp_peer(0);
  cr_expect_eq(access_rights(policy, &carol), ACCESS_USE | ACCESS_ADMIN);
  cr_expect_eq(access_rights(policy, &root), 0, "admin_users emptied: root is not special");
  access_policy_free(policy);
}

Test(access_rights, peer_text_names_the_peer) {
  char text[PEER_TEXT_MAX];
  struct peer unknown = {0}, tcp = tcp_peer(1001), unix_one = unix_peer(1001, 1001, 0);
  cr_expect_str_eq(peer_text(&unknown, text), "uid=?");
  cr_expect_str_eq(peer_text(&tcp, text), "uid=1001");
  cr_expect_str_eq(peer_text(&unix_one, text), "uid=1001 pid=42");
}

/* ---- web pages ------------------------------------------------------------------------------- */

static enum access_web_verdict verdict_of(const char *head, bool *listed) {
  static struct name_list hosts, origins;
  char problem[200];
  cr_assert_null(access_parse_hosts("flip.internal", &hosts, problem, sizeof(problem)));
  cr_assert_null(access_parse_origins("http://localhost:3000", &origins, problem, sizeof(problem)));
  static char buffer[2048];
  snprintf(buffer, sizeof(buffer), "%s", head);
  size_t scanned = 0;
  struct http1_request request;
  int status;
  cr_assert_eq(http1_parse(buffer, strlen(buffer), &scanned, &request, &status), HTTP1_COMPLETE,
               "%s", head);
  return access_check_web(&hosts, &origins, &request, listed);
}

#define HEAD(fields) "GET /v1/enrollments/x HTTP/1.1\r\n" fields "\r\n"

Test(access_web, hosts) {
  bool listed;
  const char *accepted[] = {
    HEAD("Host: localhost\r\n"), HEAD("Host: LocalHost:8750\r\n"), HEAD("Host: 127.0.0.1\r\n"),
    HEAD("Host: 127.255.0.9:1\r\n"), HEAD("Host: [::1]\r\n"), HEAD("Host: [::1]:8750\r\n"),
    HEAD("Host: [::ffff:127.0.0.1]:80\r\n"), HEAD("Host: flip.internal\r\n"),
    HEAD("Host: FLIP.internal:443\r\n"), "GET /x HTTP/1.0\r\n\r\n" /* 1.0 without Host */};
  for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
    cr_expect_eq(verdict_of(accepted[i], &listed), ACCESS_WEB_OK, "%s", accepted[i]);
  const char *misdirected[] = {
    HEAD("Host: evil.example\r\n"), HEAD("Host: localhost.evil.example\r\n"),
    HEAD("Host: 127.0.0.1.nip.io\r\n"), HEAD("Host: 10.0.0.1\r\n"), HEAD("Host: [::2]\r\n"),
    HEAD("Host: localhost:\r\n"), HEAD("Host: localhost:123456\r\n"), HEAD("Host: :8750\r\n"),
    HEAD("Host: localhost:80a\r\n"), HEAD("Host: 0x7f.0.0.1\r\n"), HEAD("Host: \r\n"),
    HEAD("Host: 2130706433\r\n"), HEAD("Host: [::1\r\n"), HEAD("Host: flip.internal.\r\n"),
    HEAD("Host: 127.0.0.256\r\n"), HEAD("Host: 127.0.0\r\n"), HEAD("Host: 127.0.0.1.2\r\n"),
    HEAD("Host: 127..0.1\r\n"), HEAD("Host: 127.0.0.1000\r\n"), HEAD("Host: 128.0.0.1\r\n")};
  for (size_t i = 0; i < sizeof(misdirected) / sizeof(misdirected[0]); i++)
    cr_expect_eq(verdict_of(misdirected[i], &listed), ACCESS_WEB_MISDIRECTED, "%s", misdirected[i]);
}

/* An absolute-form target's authority is judged as Host is, and the Host field is ignored. */
Test(access_web, an_absolute_form_authority_is_judged_as_host) {
  bool listed;
  const char *accepted[] = {
    "GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET http://127.0.0.1:8750/stats HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "GET http://flip.internal/stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET http://[::1]:8750/stats HTTP/1.0\r\n\r\n"};
  for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
    cr_expect_eq(verdict_of(accepted[i], &listed), ACCESS_WEB_OK, "%s", accepted[i]);
  const char *misdirected[] = {
    "GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET http://10.0.0.1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET https://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"};
  for (size_t i = 0; i < sizeof(misdirected) / sizeof(misdirected[0]); i++)
    cr_expect_eq(verdict_of(misdirected[i], &listed), ACCESS_WEB_MISDIRECTED, "%s", misdirected[i]);
}

Test(access_web, origins_and_sec_fetch_site) {
  bool listed;
  cr_expect_eq(verdict_of(HEAD("Host: localhost\r\n"), &listed), ACCESS_WEB_OK);
  cr_expect(!listed);
  cr_expect_eq(verdict_of(HEAD("Host: localhost\r\nOrigin: http://localhost:3000\r\n"), &listed),
               ACCESS_WEB_OK);
  cr_expect(listed);
  cr_expect_eq(verdict_of(HEAD("Host: localhost\r\nOrigin: HTTP://LOCALHOST:3000\r\n"
                               "Sec-Fetch-Site: same-site\r\n"), &listed),
               ACCESS_WEB_OK, "a listed page's fetch passes whatever Sec-Fetch-Site says");
  const char *foreign[] = {
    HEAD("Host: localhost\r\nOrigin: http://evil.example\r\n"),
    HEAD("Host: localhost\r\nOrigin: null\r\n"),
    HEAD("Host: localhost\r\nOrigin: http://localhost:3001\r\n"),
    HEAD("Host: localhost\r\nOrigin: http://localhost:3000/\r\n"),
    HEAD("Host: localhost\r\nOrigin: http://localhost:3000\r\nOrigin: http://evil.example\r\n")};
  for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
    cr_expect_eq(verdict_of(foreign[i], &listed), ACCESS_WEB_FOREIGN_ORIGIN, "%s", foreign[i]);
  const char *cross[] = {HEAD("Host: localhost\r\nSec-Fetch-Site: cross-site\r\n"),
                         HEAD("Host: localhost\r\nSec-Fetch-Site: same-origin\r\n"),
                         HEAD("Host: localhost\r\nSec-Fetch-Site: same-site\r\n"),
                         HEAD("Host: localhost\r\nSec-Fetch-Site: none\r\nSec-Fetch-Site: none\r\n")};
  for (size_t i = 0; i < sizeof(cross) / sizeof(cross[0]); i++)
    cr_expect_eq(verdict_of(cross[i], &listed), ACCESS_WEB_CROSS_SITE, "%s", cross[i]);
  cr_expect_eq(verdict_of(HEAD("Host: localhost\r\nSec-Fetch-Site: None\r\n"), &listed),
               ACCESS_WEB_OK, "a typed URL");
  cr_expect_eq(verdict_of(HEAD("Host: evil.example\r\nOrigin: http://localhost:3000\r\n"), &listed),
               ACCESS_WEB_MISDIRECTED, "the Host rule comes first");
}
