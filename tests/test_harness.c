/* The test harness's own guarantees, on which every integration suite relies. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RESERVERS 4
#define PORTS_EACH 100

/* Criterion runs tests in parallel processes and ctest runs suites in parallel: two daemons once
 * got the same "free" port, the second failed to bind and its test talked to the first. Ports
 * reserved by processes alive at the same time must all differ, and lie below the ephemeral
 * range (which bind(0) and outgoing connections draw from). */
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

  int floor = ephemeral_port_floor();
  static unsigned char seen[65536];
  for (size_t i = 0; i < count; i++) {
    cr_expect(ports[i] > 0 && ports[i] < floor, "port %d is not below the ephemeral range", ports[i]);
    cr_expect(!seen[ports[i]], "port %d was given out twice", ports[i]);
    seen[ports[i]] = 1;
  }
}
