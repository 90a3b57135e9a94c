/* settings: the configuration file as the daemon loads it, and -t. */
#ifndef FLIPCACHED_SETTINGS_H
#define FLIPCACHED_SETTINGS_H

#include <stdbool.h>

#include "config.h"

/* Loads the configuration into cfg: a missing default file means "all defaults", a missing file
 * named with -c is an error. Every error goes to `report` (stderr at start-up, the log on
 * SIGHUP), and so does a warning for allow_users = * beside a non-empty allow_groups (valid,
 * but the group then restricts nothing). 0; -1 for errors in the file; SETTINGS_UNREADABLE when
 * the file itself could not be read (nothing of it was). */
#define SETTINGS_UNREADABLE -2
int settings_load(const char *path, bool path_given, struct config *cfg,
                  void (*report)(const char *line));
void settings_report_to_stderr(const char *line);
/* -t: what start-up would check, short of binding and the network: the credential files' rules
 * (a message names the file and the rule, never the content), that the cache directory can be
 * opened or created, the TLS files. Also after errors in the file (config_has_errors: they
 * were printed, and the values that did parse are checked), so that one run reports every
 * problem. Prints "configuration OK" or each problem; the exit status. */
int settings_check(const struct config *cfg, bool config_has_errors);

#endif
