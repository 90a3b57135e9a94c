/* The test harness's own guarantees, on which every integration suite relies. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RESERVERS 4
#define PORTS_EACH 100

/* Criterion runs tests in parallel processes and ctest runs suites in parallel: two daemons once
 * got the same "free" port, the second failed to bind and its test talked to the first. Ports
 * reserved by processes alive at the same time must all differ, and lie outside the ephemeral
 * range (which bind(0) and outgoing connections draw from) where the machine leaves room. */
Test(harness, ports_reserved_by_concurrent_processes_never_coincide, .timeout = 60) {
  int results[2], release[2];
  cr_assert(pipe(results) == 0 && pipe(release) == 0);
  pid_t reservers[RESERVERS];
  for (int r = 0; r < RESERVERS; r++) {
    reservers[r] = fork();
    cr_assert(reservers[r] >= 0);
    if (reservers[r] == 0) {
      close(results[0]);
      close(release[1]);
      for (int i = 0; i < PORTS_EACH; i++) {
        int port = free_port();
        if (write(results[1], &port, sizeof(port)) != sizeof(port))
          _exit(1);
      }
      char byte;
      while (read(release[0], &byte, 1) > 0) /* holds its ports until every process has its own */
        ;
      _exit(0);
    }
  }
  close(results[1]);
  close(release[0]);
  static int ports[RESERVERS * PORTS_EACH + PORTS_EACH];
  size_t count = 0;
  for (int i = 0; i < PORTS_EACH; i++)
    ports[count++] = free_port(); /* this process too, meanwhile */
  int port;
  while (count < sizeof(ports) / sizeof(ports[0]) &&
         read(results[0], &port, sizeof(port)) == sizeof(port))
    ports[count++] = port;
  close(release[1]);
  for (int r = 0; r < RESERVERS; r++) {
    int status = 0;
    waitpid(reservers[r], &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  cr_assert_eq(count, sizeof(ports) / sizeof(ports[0]), "every process reserved its ports");

  int first, span, low, high;
  ephemeral_port_range(&low, &high);
  reservable_port_range(low, high, &first, &span);
  bool outside_ephemeral = first + span <= low || first > high;
  static unsigned char seen[65536];
  for (size_t i = 0; i < count; i++) {
    cr_expect(ports[i] >= first && ports[i] < first + span, "port %d is out of range", ports[i]);
    cr_expect(!outside_ephemeral || ports[i] < low || ports[i] > high,
              "port %d is in the ephemeral range %d..%d", ports[i], low, high);
    cr_expect(!seen[ports[i]], "port %d was given out twice", ports[i]);
    seen[ports[i]] = 1;
  }
}

/* Where the reserved ports come from, for the ephemeral ranges machines are set up with. */
Test(harness, reserved_ports_lie_outside_the_ephemeral_range_when_there_is_room) {
  static const struct {
    int low, high, first, count;
  } CASES[] = {
    {32768, 60999, 20000, 12768}, /* Linux's default */
    {10000, 65535, 1024, 8976},   /* room only below it, under 20000 */
    {1024, 50000, 50001, 15535},  /* room only above it */
    {1024, 65535, 1024, 64512},   /* no room: all ports, the locks still keep tests apart */
  };
  for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
    int first = 0, count = 0;
    reservable_port_range(CASES[i].low, CASES[i].high, &first, &count);
    cr_expect_eq(first, CASES[i].first, "ephemeral %d..%d", CASES[i].low, CASES[i].high);
    cr_expect_eq(count, CASES[i].count, "ephemeral %d..%d", CASES[i].low, CASES[i].high);
  }
}

/* The demo's stand-in upstream explains itself: --help names its control routes and every mode
 * (the list is printed from the table the fake answers by, so it cannot go stale). */
static int run_fake(const char *arguments, char *out, size_t len) {
  char command[512];
  snprintf(command, sizeof(command), "%s %s 2>&1", FAKE_UPSTREAM_BIN, arguments);
  FILE *pipe = popen(command, "r");
  cr_assert(pipe);
  size_t used = fread(out, 1, len - 1, pipe);
  out[used] = '\0';
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(harness, the_fake_upstream_has_a_help_naming_its_routes_and_modes) {
  char out[8192];
  cr_expect_eq(run_fake("--help", out, sizeof(out)), 0);
  const char *expected[] = {"--token-file", "--port", "/_fake/mode", "/_fake/stats",
                            "/_fake/reset", "/_fake/release", "/_fake/version",
                            " 404", " 429", " 500", " hold", " wrong-id", " garbage", " trickle",
                            " bad-element"};
  for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
    cr_expect(strstr(out, expected[i]) != NULL, "--help lacks %s:\n%s", expected[i], out);
  cr_expect_eq(run_fake("--no-such-option", out, sizeof(out)), 2);
  cr_expect(strstr(out, "usage: flip-fake-upstream") != NULL, "%s", out);
  cr_expect_eq(run_fake("", out, sizeof(out)), 2, "no token file");
}
