/* validate: which upstream 200 bodies may be stored and served. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
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

struct token_case {
  char body[200];
  bool ok;
  char token[40];
  long expires_in;
};

ParameterizedTestParameters(token_response, classifies_token_responses) {
  static struct token_case cases[] = {
    {"{\"access_token\":\"at_1\",\"token_type\":\"Bearer\",\"expires_in\":3600}", true, "at_1", 3600},
    {"{\"access_token\":\"at_2\",\"token_type\":\"bearer\",\"expires_in\":60}", true, "at_2", 60},
    {"{\"access_token\":\"at_3\"}", true, "at_3", TOKEN_DEFAULT_EXPIRES_IN},
    {"{\"access_token\":\"at_4\",\"expires_in\":99999999999}", true, "at_4", TOKEN_MAX_EXPIRES_IN},
    {"{\"access_token\":\"at_5\",\"token_type\":\"mac\"}", false, "", 0},
    {"{\"access_token\":\"at 6\"}", false, "", 0},
    {"{\"access_token\":\"\"}", false, "", 0},
    {"{\"access_token\":42}", false, "", 0},
    {"{\"access_token\":\"at_7\",\"expires_in\":0}", false, "", 0},
    {"{\"access_token\":\"at_8\",\"expires_in\":\"3600\"}", false, "", 0},
    {"{\"token\":\"at_9\"}", false, "", 0},
    {"[\"at_10\"]", false, "", 0},
    {"not json", false, "", 0},
    {"", false, "", 0},
  };
  return cr_make_param_array(struct token_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct token_case *c, token_response, classifies_token_responses) {
  char token[64] = "";
  long expires_in = 0;
  const char *problem = validate_token_response(c->body, strlen(c->body), token, sizeof(token),
                                                &expires_in);
  if (c->ok) {
    cr_expect_null(problem, "'%s': %s", c->body, problem);
    cr_expect_str_eq(token, c->token);
    cr_expect_eq(expires_in, c->expires_in);
  } else {
    cr_expect_not_null(problem, "'%s' accepted", c->body);
    cr_expect(strstr(problem, "at_") == NULL, "the message never quotes the body");
  }
}

Test(token_response, a_token_longer_than_the_buffer_is_refused) {
  char token[8];
  long expires_in;
  const char body[] = "{\"access_token\":\"0123456789\"}";
  cr_expect_not_null(validate_token_response(body, sizeof(body) - 1, token, sizeof(token), &expires_in));
}

/* --- the list endpoint ------------------------------------------------------------------------ */

#define ID_A "6f1c2a38-0d7b-4a7e-9a58-3c1f0b2e4d01"
#define ID_B "6F1C2A38-0D7B-4A7E-9A58-3C1F0B2E4D02"

static const char *list_of(const char *text, struct list_element **elements, size_t *count,
                           long *bad) {
  return validate_enrollment_list(text, strlen(text), elements, count, bad);
}

Test(enrollment_list, finds_every_element_as_its_own_bytes) {
  const char *body = " {\"total\": 2, \"meta\": {\"a\": [1, \"]\"]},\n \"enrollments\": [ "
                     "{\"id\":\"" ID_A "\",\"site\":{\"name\":\"x]}\"}} ,"
                     "{\"devices\":[],\"id\":\"" ID_B "\"}\n], \"next\": null } \n";
  struct list_element *elements;
  size_t count;
  long bad;
  const char *problem = list_of(body, &elements, &count, &bad);
  cr_assert_null(problem, "%s", problem);
  cr_assert_eq(count, 2);
  cr_expect_str_eq(elements[0].id, ID_A);
  cr_expect_str_eq(elements[1].id, "6f1c2a38-0d7b-4a7e-9a58-3c1f0b2e4d02", "canonical: lower case");
  const char first[] = "{\"id\":\"" ID_A "\",\"site\":{\"name\":\"x]}\"}}";
  cr_expect_eq(elements[0].len, sizeof(first) - 1);
  cr_expect(memcmp(body + elements[0].offset, first, sizeof(first) - 1) == 0);
  const char second[] = "{\"devices\":[],\"id\":\"" ID_B "\"}";
  cr_expect_eq(elements[1].len, sizeof(second) - 1);
  cr_expect(memcmp(body + elements[1].offset, second, sizeof(second) - 1) == 0);
  for (size_t i = 0; i < count; i++)
    cr_expect_eq(validate_enrollment_body(body + elements[i].offset, elements[i].len,
                                          elements[i].id), BODY_OK,
                 "each element is what GET /v1/enrollments/{id} would have returned");
  free(elements);
}

Test(enrollment_list, an_empty_list_is_a_list) {
  struct list_element *elements;
  size_t count;
  long bad;
  cr_expect_null(list_of("{\"enrollments\":[]}", &elements, &count, &bad));
  cr_expect_eq(count, 0);
  cr_expect_null(elements);
}

struct list_case {
  const char *body;
  long bad_index;
};

static const struct list_case LIST_CASES[] = {
    {"", -1},
    {"[]", -1},
    {"{}", -1},
    {"{\"enrollment\":[]}", -1},
    {"{\"enrollments\":{}}", -1},
    {"{\"enrollments\":[],\"enrollments\":[]}", -1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"}", -1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"}]", -1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"}]} x", -1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"},]}", 1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"},{\"id\":\"not-a-uuid\"}]}", 1},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"},{\"id\":7}]}", 1},
    {"{\"enrollments\":[{\"name\":\"x\"}]}", 0},
    {"{\"enrollments\":[\"" ID_A "\"]}", 0},
    {"{\"enrollments\":[{'id':'" ID_A "'}]}", 0},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\",\"x\":\"\xff\"}]}", 0},
    {"{\"enrollments\":[{\"id\":\"" ID_A "\"} {\"id\":\"" ID_A "\"}]}", -1},
    {"{\"n\":tru,\"enrollments\":[]}", -1},
    {"{'enrollments':[]}", -1},
};

Test(enrollment_list, refuses_the_whole_list) {
  for (size_t i = 0; i < sizeof(LIST_CASES) / sizeof(LIST_CASES[0]); i++) {
    const struct list_case *c = &LIST_CASES[i];
    struct list_element *elements = NULL;
    size_t count = 7;
    long bad = 99;
    const char *problem = list_of(c->body, &elements, &count, &bad);
    cr_expect_not_null(problem, "'%s' accepted", c->body);
    cr_expect_null(elements, "nothing of a refused list is kept");
    cr_expect_eq(count, 0);
    cr_expect_eq(bad, c->bad_index, "'%s': element %ld blamed (%s)", c->body, bad,
                 problem ? problem : "");
    if (problem)
      cr_expect(strstr(problem, "6f1c") == NULL, "the message never quotes the body");
  }
}

Test(enrollment_list, nesting_is_limited_per_element_as_for_one_enrollment) {
  char body[400] = "{\"enrollments\":[{\"id\":\"" ID_A "\",\"x\":";
  for (int i = 0; i < VALIDATE_MAX_DEPTH; i++)
    strcat(body, "[");
  for (int i = 0; i < VALIDATE_MAX_DEPTH; i++)
    strcat(body, "]");
  strcat(body, "}]}");
  struct list_element *elements;
  size_t count;
  long bad;
  cr_expect_not_null(list_of(body, &elements, &count, &bad));
  cr_expect_eq(bad, 0);
}

Test(enrollment_list, at_production_size) {
  /* 20,000 enrollments of about 1.3 KB: a big program's list, 26 MB. */
  const size_t n = 20000, pad = 1300;
  size_t cap = n * (pad + 64) + 64, len = 0;
  char *body = malloc(cap);
  cr_assert_not_null(body);
  len += (size_t)sprintf(body + len, "{\"enrollments\":[");
  for (size_t i = 0; i < n; i++) {
    len += (size_t)sprintf(body + len, "%s{\"id\":\"00000000-0000-4000-8000-%012zx\",\"p\":\"",
                           i ? "," : "", i);
    memset(body + len, 'x', pad);
    len += pad;
    len += (size_t)sprintf(body + len, "\"}");
  }
  len += (size_t)sprintf(body + len, "]}");
  struct list_element *elements;
  size_t count;
  long bad;
  const char *problem = validate_enrollment_list(body, len, &elements, &count, &bad);
  cr_assert_null(problem, "%s", problem);
  cr_expect_eq(count, n);
  cr_expect_str_eq(elements[n - 1].id, "00000000-0000-4000-8000-000000004e1f");
  free(elements);
  /* One byte more than the element limit's worth of elements is refused whole. */
  len = (size_t)sprintf(body, "{\"enrollments\":[");
  for (size_t i = 0; i <= VALIDATE_LIST_MAX_ELEMENTS; i++)
    len += (size_t)sprintf(body + len, "%s{\"id\":\"00000000-0000-4000-8000-%012zx\"}",
                           i ? "," : "", i);
  len += (size_t)sprintf(body + len, "]}");
  cr_expect_not_null(validate_enrollment_list(body, len, &elements, &count, &bad));
  cr_expect_eq(bad, VALIDATE_LIST_MAX_ELEMENTS);
  free(body);
}

Test(enrollment_list, step_by_step_is_the_same_as_at_once) {
  const char *body = "{\"a\":1,\"enrollments\":[{\"id\":\"" ID_A "\"},{\"id\":\"" ID_B "\"},"
                     "{\"id\":\"" ID_A "\"}],\"b\":[]}";
  struct list_scan scan;
  cr_assert_eq(list_scan_begin(&scan, body, strlen(body)), 0);
  int steps = 0;
  enum list_progress progress;
  while ((progress = list_scan_step(&scan, 1)) == LIST_MORE)
    steps++;
  cr_expect_eq(progress, LIST_DONE, "%s", scan.problem ? scan.problem : "");
  cr_expect_eq(scan.count, 3);
  cr_expect_geq(steps, 3, "one element a step");
  list_scan_end(&scan);
  const char *bad = "{\"enrollments\":[{\"id\":\"" ID_A "\"},{\"id\":\"" ID_B "\"},{\"id\":1}]}";
  cr_assert_eq(list_scan_begin(&scan, bad, strlen(bad)), 0);
  while ((progress = list_scan_step(&scan, 1)) == LIST_MORE)
    ;
  cr_expect_eq(progress, LIST_REFUSED);
  cr_expect_eq(scan.bad_index, 2);
  cr_expect_eq(scan.count, 0, "refused whole: the first two are dropped too");
  cr_expect_null(scan.elements);
  list_scan_end(&scan);
}
