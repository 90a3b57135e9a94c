/* libFuzzer: any configuration text is parsed or refused with line-numbered errors, never a
 * crash, and a text that parses yields values within the table's bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  static struct config cfg;
  static struct config_errors errors;
  if (config_load_string(text, "fuzz.conf", &cfg, &errors) == 0) {
    if (cfg.listen_count == 0 || cfg.listen_count > CONFIG_MAX_LISTEN || cfg.timeout_ms < 10 ||
        cfg.max_size < 256u * 1024u || cfg.upstream_max_connections == 0)
      abort();
  } else if (errors.count == 0) {
    abort(); /* refused without a reason */
  }
  free(text);
  return 0;
}
