/* files: file helpers shared by the test programs. */
#ifndef FLIPCACHED_TEST_FILES_H
#define FLIPCACHED_TEST_FILES_H

#include <stdbool.h>

/* Whether the file at path contains needle (bytes); false when it cannot be read. */
bool file_contains(const char *path, const char *needle);
/* Removes a directory tree (no-op for NULL or ""). */
void remove_tree(const char *dir);

#endif
