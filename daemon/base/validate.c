#include "validate.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
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

/* An enrollment's parsed value: an object with a string "id" (*id set to it). */
static enum body_verdict enrollment_shape(json_object *root, json_object **id) {
  *id = NULL;
  if (!json_object_is_type(root, json_type_object))
    return BODY_NOT_OBJECT;
  if (!json_object_object_get_ex(root, "id", id) || !json_object_is_type(*id, json_type_string))
    return BODY_NO_ID;
  return BODY_OK;
}

bool validate_not_found_body(const char *body, size_t len) {
  json_object *root;
  if (!parse_strict(body, len, &root))
    return false;
  json_object_put(root);
  return true;
}

enum body_verdict validate_enrollment_body(const char *body, size_t len, const char *enrollment_id) {
  json_object *root;
  if (!parse_strict(body, len, &root))
    return BODY_NOT_JSON;
  json_object *id;
  enum body_verdict verdict = enrollment_shape(root, &id);
  if (verdict == BODY_OK && (strcasecmp(json_object_get_string(id), enrollment_id) != 0 ||
                             (size_t)json_object_get_string_len(id) != strlen(enrollment_id)))
    verdict = BODY_WRONG_ID;
  json_object_put(root);
  return verdict;
}

/* --- the list endpoint ------------------------------------------------------------------------ */

enum {
  SCAN_OBJECT,       /* before the outer '{' */
  SCAN_MEMBER,       /* before a member's name */
  SCAN_ELEMENT,      /* before an element of "enrollments" (the '[' or a ',' consumed) */
  SCAN_FIRST_ELEMENT, /* the same, right after '[': ']' may close an empty list */
  SCAN_AFTER_MEMBER, /* after a member's value: ',' or '}' */
};

static void skip_space(struct list_scan *scan) {
  while (scan->pos < scan->len && (scan->body[scan->pos] == ' ' || scan->body[scan->pos] == '\t' ||
                                   scan->body[scan->pos] == '\r' || scan->body[scan->pos] == '\n'))
    scan->pos++;
}

/* The next non-space byte is c: consumed, true. */
static bool take(struct list_scan *scan, char c) {
  skip_space(scan);
  if (scan->pos >= scan->len || scan->body[scan->pos] != c)
    return false;
  scan->pos++;
  return true;
}

/* Parses the one strict JSON value that starts at the next non-space byte; the tokener stops at
 * its end, which the value never crosses. *value owned by the caller (NULL for null). */
static bool parse_value(struct list_scan *scan, json_object **value) {
  skip_space(scan);
  *value = NULL;
  if (scan->pos >= scan->len)
    return false;
  json_tokener_reset(scan->tokener);
  size_t rest = scan->len - scan->pos;
  *value = json_tokener_parse_ex(scan->tokener, scan->body + scan->pos,
                                 rest > (size_t)INT32_MAX ? INT32_MAX : (int)rest);
  if (json_tokener_get_error(scan->tokener) != json_tokener_success) {
    json_object_put(*value);
    *value = NULL;
    return false; /* malformed, too deep, or cut short (a value waiting for more input) */
  }
  scan->pos += json_tokener_get_parse_end(scan->tokener);
  return true;
}

static enum list_progress refuse(struct list_scan *scan, const char *problem, bool blame_element) {
  scan->problem = problem;
  scan->bad_index = blame_element ? (long)scan->count : -1;
  free(scan->elements);
  scan->elements = NULL;
  scan->count = 0;
  return LIST_REFUSED;
}

/* One element: checked as a single enrollment would be, and its span kept. */
static enum list_progress scan_element(struct list_scan *scan) {
  if (scan->count == VALIDATE_LIST_MAX_ELEMENTS)
    return refuse(scan, "more than 100000 enrollments", true);
  json_object *element, *id;
  skip_space(scan);
  size_t start = scan->pos;
  if (!parse_value(scan, &element))
    return refuse(scan, "an element is not valid JSON", true);
  enum body_verdict verdict = enrollment_shape(element, &id);
  char canonical[UUID_TEXT_LEN + 1];
  bool uuid = verdict == BODY_OK && uuid_canonicalize(json_object_get_string(id),
                                                      (size_t)json_object_get_string_len(id),
                                                      canonical);
  json_object_put(element);
  if (verdict != BODY_OK)
    return refuse(scan, verdict == BODY_NOT_OBJECT ? "an element is not a JSON object"
                                                   : "an element has no string \"id\"", true);
  if (!uuid)
    return refuse(scan, "an element's \"id\" is not a UUID", true);
  if (scan->count == scan->cap) {
    size_t cap = scan->cap ? scan->cap * 2 : 256;
    struct list_element *grown = realloc(scan->elements, cap * sizeof(*grown));
    if (!grown)
      return refuse(scan, "out of memory", false);
    scan->elements = grown;
    scan->cap = cap;
  }
  size_t end = scan->pos; /* the tokener may have taken the blanks after the value */
  while (end > start && scan->body[end - 1] != '}')
    end--;
  struct list_element *out = &scan->elements[scan->count++];
  out->offset = (uint32_t)start;
  out->len = (uint32_t)(end - start);
  memcpy(out->id, canonical, sizeof(out->id));
  if (take(scan, ','))
    scan->state = SCAN_ELEMENT;
  else if (take(scan, ']'))
    scan->state = SCAN_AFTER_MEMBER;
  else
    return refuse(scan, "the \"enrollments\" array is not closed", false);
  return LIST_MORE;
}

/* A member of the outer object: "enrollments" opens the array, the others are parsed and
 * dropped. */
static enum list_progress scan_member(struct list_scan *scan) {
  json_object *name, *value;
  if (!parse_value(scan, &name) || !json_object_is_type(name, json_type_string)) {
    json_object_put(name);
    return refuse(scan, "not valid JSON", false);
  }
  bool is_list = strcmp(json_object_get_string(name), "enrollments") == 0;
  json_object_put(name);
  if (!take(scan, ':'))
    return refuse(scan, "not valid JSON", false);
  if (!is_list) {
    if (!parse_value(scan, &value))
      return refuse(scan, "not valid JSON", false);
    json_object_put(value);
    scan->state = SCAN_AFTER_MEMBER;
    return LIST_MORE;
  }
  if (scan->seen_list)
    return refuse(scan, "\"enrollments\" appears twice", false);
  scan->seen_list = true;
  if (!take(scan, '['))
    return refuse(scan, "\"enrollments\" is not an array", false);
  scan->state = SCAN_FIRST_ELEMENT;
  return LIST_MORE;
}

static enum list_progress scan_after_member(struct list_scan *scan) {
  if (take(scan, ',')) {
    scan->state = SCAN_MEMBER;
    return LIST_MORE;
  }
  if (!take(scan, '}'))
    return refuse(scan, "not valid JSON", false);
  skip_space(scan);
  if (scan->pos != scan->len)
    return refuse(scan, "trailing data after the object", false);
  if (!scan->seen_list)
    return refuse(scan, "no \"enrollments\" array", false);
  return LIST_DONE;
}

int list_scan_begin(struct list_scan *scan, const char *body, size_t len) {
  *scan = (struct list_scan){.body = body, .len = len, .bad_index = -1, .state = SCAN_OBJECT};
  scan->tokener = json_tokener_new_ex(VALIDATE_MAX_DEPTH);
  if (!scan->tokener)
    return -1;
  /* STRICT as for single bodies; ALLOW_TRAILING_CHARS makes the tokener stop after each value. */
  json_tokener_set_flags(scan->tokener, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);
  return 0;
}

enum list_progress list_scan_step(struct list_scan *scan, size_t max_elements) {
  if (scan->problem)
    return LIST_REFUSED;
  if (scan->len > UINT32_MAX)
    return refuse(scan, "over 4 GiB", false);
  enum list_progress progress = LIST_MORE;
  for (size_t parsed = 0; progress == LIST_MORE && parsed < max_elements;) {
    switch (scan->state) {
    case SCAN_OBJECT:
      if (!take(scan, '{'))
        return refuse(scan, "not a JSON object", false);
      if (take(scan, '}'))
        return refuse(scan, "no \"enrollments\" array", false);
      scan->state = SCAN_MEMBER;
      break;
    case SCAN_MEMBER:
      progress = scan_member(scan);
      break;
    case SCAN_FIRST_ELEMENT:
      if (take(scan, ']')) {
        scan->state = SCAN_AFTER_MEMBER;
        break;
      }
      __attribute__((fallthrough));
    case SCAN_ELEMENT:
      progress = scan_element(scan);
      parsed++;
      break;
    case SCAN_AFTER_MEMBER:
      progress = scan_after_member(scan);
      break;
    }
  }
  return progress;
}

void list_scan_end(struct list_scan *scan) {
  json_tokener_free(scan->tokener);
  scan->tokener = NULL;
  free(scan->elements);
  scan->elements = NULL;
}

const char *validate_enrollment_list(const char *body, size_t len, struct list_element **elements,
                                     size_t *count, long *bad_index) {
  *elements = NULL;
  *count = 0;
  *bad_index = -1;
  struct list_scan scan;
  if (list_scan_begin(&scan, body, len) != 0)
    return "out of memory";
  enum list_progress progress;
  while ((progress = list_scan_step(&scan, SIZE_MAX)) == LIST_MORE)
    ;
  const char *problem = scan.problem;
  *bad_index = scan.bad_index;
  if (progress == LIST_DONE) {
    *elements = scan.elements;
    *count = scan.count;
    scan.elements = NULL;
  }
  list_scan_end(&scan);
  return problem;
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
