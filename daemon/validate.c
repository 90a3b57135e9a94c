#include "validate.h"

#include <json-c/json.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

enum body_verdict validate_enrollment_body(const char *body, size_t len, const char *enrollment_id) {
  if (len == 0 || len > (size_t)INT32_MAX)
    return BODY_NOT_JSON;
  struct json_tokener *tokener = json_tokener_new_ex(VALIDATE_MAX_DEPTH);
  if (!tokener)
    return BODY_NOT_JSON;
  /* STRICT refuses json-c's leniencies (single quotes, unquoted names, trailing commas);
   * ALLOW_TRAILING_CHARS lets the tokener stop after the value so that the parse end can be
   * checked below, where only whitespace may follow. */
  json_tokener_set_flags(tokener, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                      JSON_TOKENER_VALIDATE_UTF8);
  json_object *root = json_tokener_parse_ex(tokener, body, (int)len);
  size_t parse_end = json_tokener_get_parse_end(tokener);
  if (!root && json_tokener_get_error(tokener) == json_tokener_continue) {
    /* All input consumed and a value may still be open (a bare literal or number waits for a
     * delimiter): a NUL says the input is complete. */
    root = json_tokener_parse_ex(tokener, "", 1);
    parse_end = len;
  }
  enum body_verdict verdict = BODY_OK;
  /* A literal null parses successfully to a NULL object: test the error, not the pointer. */
  if (json_tokener_get_error(tokener) != json_tokener_success) {
    verdict = BODY_NOT_JSON;
    goto out;
  }
  for (size_t i = parse_end; i < len; i++) {
    if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n') {
      verdict = BODY_NOT_JSON;
      goto out;
    }
  }
  if (!json_object_is_type(root, json_type_object)) {
    verdict = BODY_NOT_OBJECT;
    goto out;
  }
  json_object *id = NULL;
  if (!json_object_object_get_ex(root, "id", &id) || !json_object_is_type(id, json_type_string)) {
    verdict = BODY_NO_ID;
    goto out;
  }
  if (strcasecmp(json_object_get_string(id), enrollment_id) != 0 ||
      (size_t)json_object_get_string_len(id) != strlen(enrollment_id))
    verdict = BODY_WRONG_ID;
out:
  json_object_put(root);
  json_tokener_free(tokener);
  return verdict;
}

const char *body_verdict_text(enum body_verdict verdict) {
  switch (verdict) {
  case BODY_OK:
    return "ok";
  case BODY_NOT_JSON:
    return "not valid JSON";
  case BODY_NOT_OBJECT:
    return "not a JSON object";
  case BODY_NO_ID:
    return "no string \"id\"";
  case BODY_WRONG_ID:
    return "\"id\" is not the requested enrollment";
  }
  return "unknown";
}
