/* validate: which upstream 200 bodies may be stored and served. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

struct body_case {
  char body[200];
  enum body_verdict verdict;
};

ParameterizedTestParameters(validate, classifies_bodies) {
  static struct body_case cases[] = {
    {"{\"id\":\"" ID "\",\"status\":\"ACTIVE\"}", BODY_OK},
    {"  {\"id\":\"" ID "\"}\n", BODY_OK},
    {"{\"id\":\"497F6ECA-6276-4993-BFEB-53CBBBBA6F08\"}", BODY_OK},
    {"{\"status\":\"ACTIVE\",\"site\":{\"id\":\"abc\"},\"id\":\"" ID "\"}", BODY_OK},
    {"", BODY_NOT_JSON},
    {"not json", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"} trailing", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"}{}", BODY_NOT_JSON},
    {"{'id':'" ID "'}", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\",}", BODY_NOT_JSON},
    {"[{\"id\":\"" ID "\"}]", BODY_NOT_OBJECT},
    {"\"" ID "\"", BODY_NOT_OBJECT},
    {"null", BODY_NOT_OBJECT},
    {"{}", BODY_NO_ID},
    {"{\"id\":42}", BODY_NO_ID},
    {"{\"id\":null}", BODY_NO_ID},
    {"{\"site\":{\"id\":\"" ID "\"}}", BODY_NO_ID},
    {"{\"id\":\"00000000-0000-4000-8000-000000000000\"}", BODY_WRONG_ID},
    {"{\"id\":\"" ID "x\"}", BODY_WRONG_ID},
    {"{\"id\":\"" ID "\\u0000\"}", BODY_WRONG_ID},
  };
  return cr_make_param_array(struct body_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct body_case *c, validate, classifies_bodies) {
  enum body_verdict verdict = validate_enrollment_body(c->body, strlen(c->body), ID);
  cr_expect_eq(verdict, c->verdict, "'%s': %s", c->body, body_verdict_text(verdict));
}

Test(validate, invalid_utf8_is_refused) {
  const char body[] = "{\"id\":\"" ID "\",\"name\":\"\xff\xfe\"}";
  cr_expect_eq(validate_enrollment_body(body, sizeof(body) - 1, ID), BODY_NOT_JSON);
}

Test(validate, embedded_nul_is_refused) {
  const char body[] = "{\"id\":\"" ID "\"}\0{}";
  cr_expect_eq(validate_enrollment_body(body, sizeof(body) - 1, ID), BODY_NOT_JSON);
}

Test(validate, nesting_deeper_than_the_limit_is_refused) {
  size_t depth = VALIDATE_MAX_DEPTH + 8;
  char *body = calloc(1, depth * 8 + 64);
  strcpy(body, "{\"id\":\"" ID "\",\"x\":");
  for (size_t i = 0; i < depth; i++)
    strcat(body, "[");
  for (size_t i = 0; i < depth; i++)
    strcat(body, "]");
  strcat(body, "}");
  cr_expect_eq(validate_enrollment_body(body, strlen(body), ID), BODY_NOT_JSON);
  free(body);
}

Test(validate, every_verdict_has_a_text) {
  for (int verdict = BODY_OK; verdict <= BODY_WRONG_ID; verdict++)
    cr_expect(strlen(body_verdict_text((enum body_verdict)verdict)) > 0);
}
