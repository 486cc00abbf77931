// era.h and another DLPack user's view of <dlpack/dlpack.h> in both include
// orders (one translation unit each), linked into one program.
#include <cstdio>

int dlpack_first(void);
int era_first(void);

int main() {
  int failed = (dlpack_first() != 0) + (era_first() != 0);
  std::printf("%d passed, %d failed\n", 2 - failed, failed);
  return failed == 0 ? 0 : 1;
}
