#include "files.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool file_contains(const char *path, const char *needle) {
  FILE *file = fopen(path, "rb");
  if (!file)
    return false;
  fseek(file, 0, SEEK_END);
  long len = ftell(file);
  rewind(file);
  char *data = malloc((size_t)len + 1);
  size_t got = fread(data, 1, (size_t)len, file);
  fclose(file);
  bool found = memmem(data, got, needle, strlen(needle)) != NULL;
  free(data);
  return found;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void remove_tree(const char *dir) {
  if (dir && dir[0])
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
