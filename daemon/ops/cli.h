/* cli: `flipcached stats`, the operator's view of a running daemon's counters. */
#ifndef FLIPCACHED_CLI_H
#define FLIPCACHED_CLI_H

/* The command's synopsis, in its own usage text and in flipcached's (-h): one text for both. */
#define CLI_STATS_SYNOPSIS "flipcached stats [-c FILE] [--url URL] [--json]"

/* argv[0] is "stats". Returns the process exit status. Blocking: it runs instead of the daemon,
 * never inside its loop. */
int cli_stats(int argc, char **argv);

#endif
