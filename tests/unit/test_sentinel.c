/* sentinel.h: what a sentinel says is read strictly; a name, a bad port, another master's
 * switch or a message of another shape is nothing. */
#include <criterion/criterion.h>
#include <string.h>

#include "sentinel.h"

static bool parse(const char *host, const char *port, struct listen_addr *out) {
  return sentinel_parse_address(host, strlen(host), port, strlen(port), out);
}

Test(sentinel, numeric_addresses_and_ports_are_the_master) {
  struct listen_addr a;
  cr_assert(parse("127.0.0.1", "6379", &a));
  cr_expect_eq(a.kind, LISTEN_TCP);
  cr_expect_str_eq(a.host, "127.0.0.1");
  cr_expect_eq(a.port, 6379);
  cr_expect(a.loopback);
  cr_assert(parse("2001:db8::7", "26379", &a));
  cr_expect_str_eq(a.host, "2001:db8::7");
  cr_expect_not(a.loopback);
  cr_assert(parse("::1", "1", &a));
  cr_expect(a.loopback);
  cr_assert(parse("10.0.0.2", "65535", &a));
  cr_expect_not(a.loopback);
}

Test(sentinel, names_bad_ports_and_junk_are_refused) {
  struct listen_addr a;
  const char *hosts[] = {"redis.internal", "", "127.0.0.1 ", "[::1]", "1.2.3", "127.0.0.1\n"};
  for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
    cr_expect_not(parse(hosts[i], "6379", &a), "host '%s'", hosts[i]);
  const char *ports[] = {"0", "65536", "", "-1", "+6379", "6379x", "99999999999999999999", " 1"};
  for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
    cr_expect_not(parse("127.0.0.1", ports[i], &a), "port '%s'", ports[i]);
  /* Lengths, not NULs, bound the strings. */
  cr_expect_not(sentinel_parse_address("127.0.0.1", 9, "6379\0", 5, &a));
  char long_host[200];
  memset(long_host, '1', sizeof(long_host));
  cr_expect_not(sentinel_parse_address(long_host, sizeof(long_host), "1", 1, &a));
}

Test(sentinel, a_switch_of_this_master_names_the_new_one) {
  struct listen_addr a;
  const char *m = "flip 127.0.0.1 7001 127.0.0.1 7002";
  cr_assert(sentinel_parse_switch(m, strlen(m), "flip", &a));
  cr_expect_str_eq(a.host, "127.0.0.1");
  cr_expect_eq(a.port, 7002);
  const char *v6 = "flip ::1 7001 ::1 7003";
  cr_assert(sentinel_parse_switch(v6, strlen(v6), "flip", &a));
  cr_expect_eq(a.port, 7003);
}

Test(sentinel, a_switch_of_another_master_or_another_shape_is_ignored) {
  struct listen_addr a;
  const char *bad[] = {
      "other 127.0.0.1 7001 127.0.0.1 7002",  /* another monitored name */
      "flipx 127.0.0.1 7001 127.0.0.1 7002",
      "fli 127.0.0.1 7001 127.0.0.1 7002",
      "flip 127.0.0.1 7001 127.0.0.1",        /* four fields */
      "flip 127.0.0.1 7001 127.0.0.1 7002 x", /* six */
      "flip  127.0.0.1 7001 127.0.0.1 7002",  /* an empty field */
      "flip 127.0.0.1 7001 127.0.0.1 7002 ",
      "flip 127.0.0.1 7001 redis.b 7002",     /* a name */
      "flip 127.0.0.1 7001 127.0.0.1 0",
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_not(sentinel_parse_switch(bad[i], strlen(bad[i]), "flip", &a), "'%s'", bad[i]);
  /* The length bounds the message: what follows it is not read. */
  const char *m = "flip 127.0.0.1 7001 127.0.0.1 70029";
  cr_assert(sentinel_parse_switch(m, strlen(m) - 1, "flip", &a));
  cr_expect_eq(a.port, 7002);
}

Test(sentinel, addresses_compare_and_format) {
  struct listen_addr a, b;
  cr_assert(parse("127.0.0.1", "7001", &a));
  cr_assert(parse("127.0.0.1", "7001", &b));
  cr_expect(sentinel_same_address(&a, &b));
  cr_assert(parse("127.0.0.1", "7002", &b));
  cr_expect_not(sentinel_same_address(&a, &b));
  cr_assert(parse("127.0.0.2", "7001", &b));
  cr_expect_not(sentinel_same_address(&a, &b));
  char text[80];
  sentinel_format_address(&a, text, sizeof(text));
  cr_expect_str_eq(text, "127.0.0.1:7001");
  cr_assert(parse("::1", "7001", &b));
  sentinel_format_address(&b, text, sizeof(text));
  cr_expect_str_eq(text, "[::1]:7001");
}
