#include "validate.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Parses one strict JSON value spanning body[0..len) but for trailing whitespace. Returns
 * whether the body is such a value; *root is the value (NULL for a literal null), owned by the
 * caller. */
static bool parse_strict(const char *body, size_t len, json_object **root_out) {
  *root_out = NULL;
  if (len == 0 || len > (size_t)INT32_MAX)
    return false;
  struct json_tokener *tokener = json_tokener_new_ex(VALIDATE_MAX_DEPTH);
  if (!tokener)
    return false;
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
  bool ok = json_tokener_get_error(tokener) == json_tokener_success;
  for (size_t i = parse_end; ok && i < len; i++)
    ok = body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n';
  json_tokener_free(tokener);
  if (!ok) {
    json_object_put(root);
    return false;
  }
  *root_out = root;
  return true;
}

enum body_verdict validate_enrollment_body(const char *body, size_t len, const char *enrollment_id) {
  json_object *root;
  if (!parse_strict(body, len, &root))
    return BODY_NOT_JSON;
  enum body_verdict verdict = BODY_OK;
  json_object *id = NULL;
  if (!json_object_is_type(root, json_type_object))
    verdict = BODY_NOT_OBJECT;
  else if (!json_object_object_get_ex(root, "id", &id) || !json_object_is_type(id, json_type_string))
    verdict = BODY_NO_ID;
  else if (strcasecmp(json_object_get_string(id), enrollment_id) != 0 ||
           (size_t)json_object_get_string_len(id) != strlen(enrollment_id))
    verdict = BODY_WRONG_ID;
  json_object_put(root);
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

const char *validate_token_response(const char *body, size_t len, char *token, size_t token_cap,
                                    long *expires_in) {
  json_object *root = NULL;
  const char *problem = NULL;
  json_object *value = NULL;
  if (!parse_strict(body, len, &root) || !json_object_is_type(root, json_type_object)) {
    problem = "not a JSON object";
    goto out;
  }
  if (!json_object_object_get_ex(root, "access_token", &value) ||
      !json_object_is_type(value, json_type_string)) {
    problem = "no string \"access_token\"";
    goto out;
  }
  const char *text = json_object_get_string(value);
  size_t text_len = (size_t)json_object_get_string_len(value);
  if (text_len == 0 || text_len >= token_cap) {
    problem = "\"access_token\" empty or too long";
    goto out;
  }
  for (size_t i = 0; i < text_len; i++) {
    if ((unsigned char)text[i] <= ' ' || (unsigned char)text[i] >= 0x7f) {
      problem = "\"access_token\" is not one run of visible ASCII";
      goto out;
    }
  }
  if (json_object_object_get_ex(root, "token_type", &value) &&
      (!json_object_is_type(value, json_type_string) ||
       strcasecmp(json_object_get_string(value), "bearer") != 0)) {
    problem = "\"token_type\" is not Bearer";
    goto out;
  }
  long seconds = TOKEN_DEFAULT_EXPIRES_IN;
  if (json_object_object_get_ex(root, "expires_in", &value)) {
    if (!json_object_is_type(value, json_type_int) || json_object_get_int64(value) <= 0) {
      problem = "\"expires_in\" is not a positive whole number";
      goto out;
    }
    int64_t given = json_object_get_int64(value);
    seconds = given > TOKEN_MAX_EXPIRES_IN ? TOKEN_MAX_EXPIRES_IN : (long)given;
  }
  memcpy(token, text, text_len + 1);
  *expires_in = seconds;
out:
  json_object_put(root);
  return problem;
}
