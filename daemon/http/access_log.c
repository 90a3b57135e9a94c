/* access_log: the access log line (access_log.h), written through log.h at info level. */
#include "access_log.h"

#include <string.h>

#include "log.h"

void log_access(const char *method, const char *target, int status, const char *cache_status,
                double ms, const char *who) {
  int path_len = (int)strcspn(target, "?");
  if (path_len > 200)
    path_len = 200;
  log_info("access: %s %.*s %d \"%s\" %.1f ms %s", method, path_len, target, status,
           cache_status ? cache_status : "-", ms, who);
}
