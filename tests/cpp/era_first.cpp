// era.h first, then another DLPack user's <dlpack/dlpack.h>: the second
// include adds nothing (same guard) and every upstream declaration is
// already there, because era ships the upstream header unchanged.
#include "era.hpp"  // era.h through the wrapper, then the other header
#include <dlpack/dlpack.h>

#include <cstdio>

int era_first(void) {
  DLManagedTensorVersioned versioned{};
  versioned.flags = DLPACK_FLAG_BITMASK_READ_ONLY;
  DLPackVersion v{DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION};
  float logits[4] = {0.f, 0.f, 0.f, 0.f};
  double ent = 0.0;
  int64_t shape[1] = {4};
  DLTensor& t = versioned.dl_tensor;
  t.data = logits;
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = 1;
  t.dtype = DLDataType{kDLFloat, 32, 1};
  t.shape = shape;
  DLTensor out{};
  out.data = &ent;
  out.device = DLDevice{kDLCPU, 0};
  out.dtype = DLDataType{kDLFloat, 64, 1};
  if (era_softmax_entropy(&t, 1.0, &out, nullptr) != ERA_STATUS_OK) return 1;
  if (ent < 1.3862943611198906 - 1e-9 || ent > 1.3862943611198906 + 1e-9 || v.major != 1) {
    std::fprintf(stderr, "era_first: entropy %g, want ln 4\n", ent);
    return 1;
  }
  return 0;
}
