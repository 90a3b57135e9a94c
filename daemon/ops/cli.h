/* cli: `flipcached stats`, the operator's view of a running daemon's counters. */
#ifndef FLIPCACHED_CLI_H
#define FLIPCACHED_CLI_H

/* argv[0] is "stats". Returns the process exit status. Blocking: it runs instead of the daemon,
 * never inside its loop. */
int cli_stats(int argc, char **argv);

#endif
