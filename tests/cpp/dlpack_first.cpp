// era.h next to another DLPack user's header, that header first: a
// translation unit of a PyTorch, CuPy or JAX extension includes
// <dlpack/dlpack.h> and then era.h. Both headers share the upstream include
// guard, so the types are declared once and all of upstream's are there.
#include <dlpack/dlpack.h>
#include "era.h"
#include "era.hpp"  // the wrapper after another DLPack user's header, too

#include <cstdio>

int dlpack_first(void) {
  // upstream types that a hand-written subset would lack
  DLManagedTensor managed{};
  DLManagedTensorVersioned versioned{};
  versioned.version.major = DLPACK_MAJOR_VERSION;
  double lstd[2] = {0.0, -1.0}, ent = 0.0;
  int64_t shape[1] = {2};
  managed.dl_tensor.data = lstd;
  managed.dl_tensor.device = DLDevice{kDLCPU, 0};
  managed.dl_tensor.ndim = 1;
  managed.dl_tensor.dtype = DLDataType{kDLFloat, 64, 1};
  managed.dl_tensor.shape = shape;
  DLTensor out{};
  out.data = &ent;
  out.device = DLDevice{kDLCPU, 0};
  out.ndim = 0;
  out.dtype = DLDataType{kDLFloat, 64, 1};
  // era takes the DLTensor inside the managed tensor as it is
  if (era_gaussian_entropy(&managed.dl_tensor, &out, nullptr) != ERA_STATUS_OK) return 1;
  double want = -1.0 + ERA_LN_2PI_E;
  if (ent < want - 1e-12 || ent > want + 1e-12 || versioned.version.major != 1) {
    std::fprintf(stderr, "dlpack_first: entropy %g, want %g\n", ent, want);
    return 1;
  }
  return 0;
}
