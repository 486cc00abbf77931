// CPU kernels of era_torch's Gaussian and softmax ops in C++: the same calls of era's C ABI
// as the ops' Python implementations (src/era_torch/_ops.py; the ops that save softmax(z) for
// the backward, src/era_torch/_heads.py), without the Python interpreter on the path of a call. They matter where the per-call cost is most of the time: small
// heads (a SAC actor's 256 x 6 log-stds) inside compiled graphs.
//
// The ops are defined (schemas, fake tensors, autograd, batching rules) by torch.library in
// Python; this file registers kernels for their CPU and AutogradCPU dispatch keys, which torch
// prefers to the Python ones registered for every device. A kernel takes a call only in the common
// case (CPU tensors of a floating dtype, finite configuration) and only while it succeeds;
// any other call goes to the Python implementation, which checks and reports errors
// (EraError with the library's message) in one place. Nothing here computes: the library does.
//
// The library is the one era_torch loaded (its functions' addresses come from Python), never
// a second copy; heads come from era_torch's head cache on first use and are kept here.
// From the C++ wrapper (bindings/cpp) it takes only constants: its functions would need the
// library linked, and errors here are era_torch's EraError.

#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "era.h"
#include "era/view.hpp"  // the C++ wrapper's dtypes (era::dtype_of) and view rank (era::max_rank)

namespace py = pybind11;

namespace {

// ----------------------------------------------------------------- the library's functions

using GaussianForward = decltype(&era_gaussian_forward_delta);
using GaussianBackward = decltype(&era_gaussian_backward_delta);
using HeadForward = decltype(&era_head_forward);
using HeadBackward = decltype(&era_head_backward);
using GaussianForwardSaved = decltype(&era_gaussian_forward_saved);
using GaussianBackwardSaved = decltype(&era_gaussian_backward_saved);
using SoftmaxForwardSavedDw = decltype(&era_softmax_forward_saved_dw);
using SoftmaxBackwardSavedDw = decltype(&era_softmax_backward_saved_dw);

struct Functions {
    GaussianForward gaussian_forward;
    GaussianBackward gaussian_backward;
    HeadForward head_forward;
    HeadBackward head_backward;
    GaussianForwardSaved gaussian_forward_saved;
    GaussianBackwardSaved gaussian_backward_saved;
    SoftmaxForwardSavedDw softmax_forward_saved_dw;
    SoftmaxBackwardSavedDw softmax_backward_saved_dw;
};

template <typename F>
F address_of(const py::object& address, const char* name) {
    return reinterpret_cast<F>(address(name).cast<std::uintptr_t>());
}

// Looked up once, from the library era_torch loaded (era_torch._native.function_address).
const Functions& functions() {
    static const Functions f = [] {
        py::gil_scoped_acquire gil;
        py::object address = py::module_::import("era_torch._native").attr("function_address");
        return Functions{
            address_of<GaussianForward>(address, "era_gaussian_forward_delta"),
            address_of<GaussianBackward>(address, "era_gaussian_backward_delta"),
            address_of<HeadForward>(address, "era_head_forward"),
            address_of<HeadBackward>(address, "era_head_backward"),
            address_of<GaussianForwardSaved>(address, "era_gaussian_forward_saved"),
            address_of<GaussianBackwardSaved>(address, "era_gaussian_backward_saved"),
            address_of<SoftmaxForwardSavedDw>(address, "era_softmax_forward_saved_dw"),
            address_of<SoftmaxBackwardSavedDw>(address, "era_softmax_backward_saved_dw"),
        };
    }();
    return f;
}

// --------------------------------------------------------------------------- heads

// (which head, last axis, up to three parameters) -> the head
using HeadKey = std::tuple<int, int64_t, double, double, double>;

struct HeadCache {
    std::mutex lock;
    std::map<HeadKey, std::pair<const EraHead*, PyObject*>> heads;  // the pointer, its owner
};

HeadCache& head_cache() {
    static auto* cache = new HeadCache();  // never destroyed: its owners are Python objects
    return *cache;
}

constexpr std::size_t kMaxHeads = 1024;

// The head for `key`: from the cache, else from era_torch's own cache through `factory`
// (a function of _ops.py called with `args`), kept alive by a reference held here.
template <typename... Args>
const EraHead* head_for(const HeadKey& key, const char* factory, Args... args) {
    HeadCache& cache = head_cache();
    {
        std::lock_guard<std::mutex> guard(cache.lock);
        auto it = cache.heads.find(key);
        if (it != cache.heads.end()) {
            return it->second.first;
        }
    }
    py::gil_scoped_acquire gil;  // the fast path above never needs the interpreter
    py::object head = py::module_::import("era_torch._ops").attr(factory)(args...);
    auto ptr = reinterpret_cast<const EraHead*>(head.attr("ptr").attr("value").cast<std::uintptr_t>());
    std::lock_guard<std::mutex> guard(cache.lock);
    if (cache.heads.size() >= kMaxHeads) {  // many configurations (a scheduled target): start over
        for (auto& entry : cache.heads) {
            Py_DECREF(entry.second.second);
        }
        cache.heads.clear();
    }
    auto inserted = cache.heads.emplace(key, std::make_pair(ptr, head.ptr()));
    if (inserted.second) {
        head.release();  // the cache owns this reference now
    }
    return inserted.first->second.first;
}

bool finite(double a, double b, double c) {
    return std::isfinite(a) && std::isfinite(b) && std::isfinite(c);
}

// ---------------------------------------------------------------------- descriptors

// A borrowed DLTensor of a CPU tensor (its shape and strides stored alongside, up to the rank
// of era.hpp's views).
struct Descriptor {
    DLTensor t{};
    int64_t dims[2 * era::max_rank]{};
};

// The DLPack dtype of a tensor these kernels pass on (era.hpp's era::dtype_of), or false.
bool dtype_of(at::ScalarType type, DLDataType& out) {
    switch (type) {
        case at::kFloat: out = era::dtype_of<float>::value; return true;
        case at::kDouble: out = era::dtype_of<double>::value; return true;
        case at::kBFloat16: out = era::dtype_of<era::bf16>::value; return true;
        case at::kHalf: out = era::dtype_of<era::f16>::value; return true;
        default: return false;
    }
}

// Describes `t`; false for a tensor these kernels leave to Python (not on the CPU, not of a
// floating dtype the heads take, more axes than era.hpp's views hold).
bool describe(const at::Tensor& t, Descriptor& d) {
    if (!t.device().is_cpu() || t.dim() > era::max_rank || !dtype_of(t.scalar_type(), d.t.dtype)) {
        return false;
    }
    const int n = static_cast<int>(t.dim());
    for (int i = 0; i < n; ++i) {
        d.dims[i] = t.size(i);
        d.dims[era::max_rank + i] = t.stride(i);
    }
    d.t.data = t.numel() ? t.data_ptr() : nullptr;  // data_ptr includes the storage offset
    d.t.device = DLDevice{kDLCPU, 0};
    d.t.ndim = n;
    d.t.shape = d.dims;
    d.t.strides = d.dims + era::max_rank;
    d.t.byte_offset = 0;
    return true;
}

// ------------------------------------------------------------ the Python implementations

constexpr const char* kOps = "era_torch._ops";      // the ops that save z
constexpr const char* kHeads = "era_torch._heads";  // the ops that save softmax(z)

template <typename R, typename... Args>
R in_python(const char* module, const char* implementation, const Args&... args) {
    py::gil_scoped_acquire gil;
    return py::module_::import(module).attr(implementation)(args...).template cast<R>();
}

// -------------------------------------------------------------------------- kernels

enum Kind : int { kGaussian = 1, kSoftmax = 2 };

at::Tensor gaussian_forward(const at::Tensor& z, const at::Tensor& delta, double h0, double lo, double hi) {
    Descriptor dz, dd, dout;
    if (z.dim() > 0 && finite(h0, lo, hi) && describe(z, dz) && describe(delta, dd)) {
        const EraHead* head = head_for(HeadKey{kGaussian, z.size(-1), h0, lo, hi}, "_gaussian_head", z.size(-1), h0, lo, hi);
        at::Tensor out = at::empty(z.sizes(), z.options());
        describe(out, dout);
        if (functions().gaussian_forward(head, &dz.t, &dd.t, &dout.t, nullptr) == ERA_STATUS_OK) {
            return out;
        }
    }
    return in_python<at::Tensor>(kOps, "_gaussian_fwd_impl", z, delta, h0, lo, hi);
}

std::tuple<at::Tensor, at::Tensor> gaussian_backward(
    const at::Tensor& z, const at::Tensor& delta, const at::Tensor& grad, double h0, double lo, double hi) {
    Descriptor dz, dd, dg, dgz, dgd;
    if (z.dim() > 0 && finite(h0, lo, hi) && describe(z, dz) && describe(delta, dd) && describe(grad, dg)) {
        const EraHead* head = head_for(HeadKey{kGaussian, z.size(-1), h0, lo, hi}, "_gaussian_head", z.size(-1), h0, lo, hi);
        at::Tensor gz = at::empty(z.sizes(), z.options());
        at::Tensor gd = at::empty(delta.sizes(), delta.options());
        describe(gz, dgz);
        describe(gd, dgd);
        if (functions().gaussian_backward(head, &dz.t, &dd.t, &dg.t, &dgz.t, &dgd.t, nullptr) == ERA_STATUS_OK) {
            return {gz, gd};
        }
    }
    return in_python<std::tuple<at::Tensor, at::Tensor>>(kOps, "_gaussian_bwd_impl", z, delta, grad, h0, lo, hi);
}

at::Tensor softmax_forward(const at::Tensor& z, double h0, double tau) {
    Descriptor dz, dout;
    if (z.dim() > 0 && finite(h0, tau, 0.0) && describe(z, dz)) {
        const EraHead* head = head_for(HeadKey{kSoftmax, z.size(-1), h0, tau, 0.0}, "_softmax_head", z.size(-1), h0, tau);
        at::Tensor out = at::empty(z.sizes(), z.options());
        describe(out, dout);
        if (functions().head_forward(head, &dz.t, &dout.t, nullptr) == ERA_STATUS_OK) {
            return out;
        }
    }
    return in_python<at::Tensor>(kOps, "_softmax_fwd_impl", z, h0, tau);
}

at::Tensor softmax_backward(const at::Tensor& z, const at::Tensor& grad, double h0, double tau) {
    Descriptor dz, dg, dgz;
    if (z.dim() > 0 && finite(h0, tau, 0.0) && describe(z, dz) && describe(grad, dg)) {
        const EraHead* head = head_for(HeadKey{kSoftmax, z.size(-1), h0, tau, 0.0}, "_softmax_head", z.size(-1), h0, tau);
        at::Tensor gz = at::empty(z.sizes(), z.options());
        describe(gz, dgz);
        if (functions().head_backward(head, &dz.t, &dg.t, &dgz.t, nullptr) == ERA_STATUS_OK) {
            return gz;
        }
    }
    return in_python<at::Tensor>(kOps, "_softmax_bwd_impl", z, grad, h0, tau);
}

// The forwards that also return softmax(z) (and, for the softmax head, dw/dh), and the
// backwards from them (docs/math.md#saved-softmax).

using Pair = std::tuple<at::Tensor, at::Tensor>;
using Triple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Pair gaussian_saved_forward(const at::Tensor& z, const at::Tensor& delta, double h0, double lo, double hi) {
    Descriptor dz, dd, dout, ds;
    if (z.dim() > 0 && finite(h0, lo, hi) && describe(z, dz) && describe(delta, dd)) {
        const EraHead* head = head_for(HeadKey{kGaussian, z.size(-1), h0, lo, hi}, "_gaussian_head", z.size(-1), h0, lo, hi);
        at::Tensor out = at::empty(z.sizes(), z.options());
        at::Tensor saved = at::empty(z.sizes(), z.options());
        describe(out, dout);
        describe(saved, ds);
        if (functions().gaussian_forward_saved(head, &dz.t, &dd.t, &dout.t, &ds.t, nullptr) == ERA_STATUS_OK) {
            return {out, saved};
        }
    }
    return in_python<Pair>(kHeads, "_gaussian_saved_fwd_impl", z, delta, h0, lo, hi);
}

Pair gaussian_saved_backward(
    const at::Tensor& saved, const at::Tensor& delta, const at::Tensor& grad, double h0, double lo, double hi) {
    Descriptor ds, dd, dg, dgz, dgd;
    if (saved.dim() > 0 && finite(h0, lo, hi) && describe(saved, ds) && describe(delta, dd) && describe(grad, dg)) {
        const EraHead* head =
            head_for(HeadKey{kGaussian, saved.size(-1), h0, lo, hi}, "_gaussian_head", saved.size(-1), h0, lo, hi);
        at::Tensor gz = at::empty(saved.sizes(), saved.options());
        at::Tensor gd = at::empty(delta.sizes(), delta.options());
        describe(gz, dgz);
        describe(gd, dgd);
        if (functions().gaussian_backward_saved(head, &ds.t, &dd.t, &dg.t, &dgz.t, &dgd.t, nullptr) == ERA_STATUS_OK) {
            return {gz, gd};
        }
    }
    return in_python<Pair>(kHeads, "_gaussian_saved_bwd_impl", saved, delta, grad, h0, lo, hi);
}

Triple softmax_saved_forward(const at::Tensor& z, double h0, double tau) {
    Descriptor dz, dout, ds, ddw;
    if (z.dim() > 0 && finite(h0, tau, 0.0) && describe(z, dz)) {
        const EraHead* head = head_for(HeadKey{kSoftmax, z.size(-1), h0, tau, 0.0}, "_softmax_head", z.size(-1), h0, tau);
        at::Tensor out = at::empty(z.sizes(), z.options());
        at::Tensor saved = at::empty(z.sizes(), z.options());
        at::Tensor dwdh = at::empty(z.sizes(), z.options());
        describe(out, dout);
        describe(saved, ds);
        describe(dwdh, ddw);
        if (functions().softmax_forward_saved_dw(head, &dz.t, &dout.t, &ds.t, &ddw.t, nullptr) == ERA_STATUS_OK) {
            return {out, saved, dwdh};
        }
    }
    return in_python<Triple>(kHeads, "_softmax_saved_fwd_impl", z, h0, tau);
}

at::Tensor softmax_saved_backward(
    const at::Tensor& saved, const at::Tensor& dwdh, const at::Tensor& grad, double h0, double tau) {
    Descriptor ds, ddw, dg, dgz;
    if (saved.dim() > 0 && finite(h0, tau, 0.0) && describe(saved, ds) && describe(dwdh, ddw) && describe(grad, dg)) {
        const EraHead* head =
            head_for(HeadKey{kSoftmax, saved.size(-1), h0, tau, 0.0}, "_softmax_head", saved.size(-1), h0, tau);
        at::Tensor gz = at::empty(saved.sizes(), saved.options());
        describe(gz, dgz);
        if (functions().softmax_backward_saved_dw(head, &ds.t, &ddw.t, &dg.t, &dgz.t, nullptr) == ERA_STATUS_OK) {
            return gz;
        }
    }
    return in_python<at::Tensor>(kHeads, "_softmax_saved_bwd_impl", saved, dwdh, grad, h0, tau);
}

// -------------------------------------------------------------------- autograd (CPU)
//
// A call that records no graph (grad mode off, or no input that requires grad: inside a
// compiled graph, inside the autograd.Function of the public functions, under no_grad) goes
// straight to the CPU kernel. A call that records one goes to the op's autograd.Function in
// Python (the formula registered for the op, in one place: _ops.py's for the ops that save z,
// _heads.py's *SavedOp for those that save softmax(z)), and so does a call with forward-mode
// tangents, which that Function refuses (no forward mode).

bool records_graph(std::initializer_list<const at::Tensor*> inputs) {
    for (const at::Tensor* t : inputs) {
        if (t->_fw_grad(/*level=*/0).defined()) {
            return true;
        }
    }
    if (!at::GradMode::is_enabled()) {
        return false;
    }
    for (const at::Tensor* t : inputs) {
        if (t->requires_grad()) {
            return true;
        }
    }
    return false;
}

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
    return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

template <typename R, typename... Args>
R with_autograd(const char* module, const char* function, const Args&... args) {
    py::gil_scoped_acquire gil;
    return py::module_::import(module).attr(function).attr("apply")(args...).template cast<R>();
}

at::Tensor gaussian_forward_autograd(const at::Tensor& z, const at::Tensor& delta, double h0, double lo, double hi) {
    if (records_graph({&z, &delta})) {
        return with_autograd<at::Tensor>(kOps, "_GaussianLogStd", z, delta, h0, lo, hi);
    }
    static const auto forward = op<decltype(gaussian_forward)>("era::gaussian_log_std");
    at::AutoDispatchBelowADInplaceOrView below;
    return forward.call(z, delta, h0, lo, hi);
}

std::tuple<at::Tensor, at::Tensor> gaussian_backward_autograd(
    const at::Tensor& z, const at::Tensor& delta, const at::Tensor& grad, double h0, double lo, double hi) {
    if (records_graph({&z, &delta, &grad})) {
        return with_autograd<std::tuple<at::Tensor, at::Tensor>>(kOps, "_GaussianBackward", z, delta, grad, h0, lo, hi);
    }
    static const auto backward = op<decltype(gaussian_backward)>("era::gaussian_log_std_backward");
    at::AutoDispatchBelowADInplaceOrView below;
    return backward.call(z, delta, grad, h0, lo, hi);
}

at::Tensor softmax_forward_autograd(const at::Tensor& z, double h0, double tau) {
    if (records_graph({&z})) {
        return with_autograd<at::Tensor>(kOps, "_SoftmaxLogits", z, h0, tau);
    }
    static const auto forward = op<decltype(softmax_forward)>("era::softmax_logits");
    at::AutoDispatchBelowADInplaceOrView below;
    return forward.call(z, h0, tau);
}

at::Tensor softmax_backward_autograd(const at::Tensor& z, const at::Tensor& grad, double h0, double tau) {
    if (records_graph({&z, &grad})) {
        return with_autograd<at::Tensor>(kOps, "_SoftmaxBackward", z, grad, h0, tau);
    }
    static const auto backward = op<decltype(softmax_backward)>("era::softmax_logits_backward");
    at::AutoDispatchBelowADInplaceOrView below;
    return backward.call(z, grad, h0, tau);
}

Pair gaussian_saved_forward_autograd(const at::Tensor& z, const at::Tensor& delta, double h0, double lo, double hi) {
    if (records_graph({&z, &delta})) {
        return with_autograd<Pair>(kHeads, "_GaussianLogStdSavedOp", z, delta, h0, lo, hi);
    }
    static const auto forward = op<decltype(gaussian_saved_forward)>("era::gaussian_log_std_saved");
    at::AutoDispatchBelowADInplaceOrView below;
    return forward.call(z, delta, h0, lo, hi);
}

Pair gaussian_saved_backward_autograd(
    const at::Tensor& saved, const at::Tensor& delta, const at::Tensor& grad, double h0, double lo, double hi) {
    if (records_graph({&saved, &delta, &grad})) {
        return with_autograd<Pair>(kHeads, "_GaussianSavedBackward", saved, delta, grad, h0, lo, hi);
    }
    static const auto backward = op<decltype(gaussian_saved_backward)>("era::gaussian_log_std_saved_backward");
    at::AutoDispatchBelowADInplaceOrView below;
    return backward.call(saved, delta, grad, h0, lo, hi);
}

Triple softmax_saved_forward_autograd(const at::Tensor& z, double h0, double tau) {
    if (records_graph({&z})) {
        return with_autograd<Triple>(kHeads, "_SoftmaxLogitsSavedOp", z, h0, tau);
    }
    static const auto forward = op<decltype(softmax_saved_forward)>("era::softmax_logits_saved");
    at::AutoDispatchBelowADInplaceOrView below;
    return forward.call(z, h0, tau);
}

at::Tensor softmax_saved_backward_autograd(
    const at::Tensor& saved, const at::Tensor& dwdh, const at::Tensor& grad, double h0, double tau) {
    if (records_graph({&saved, &dwdh, &grad})) {
        return with_autograd<at::Tensor>(kHeads, "_SoftmaxSavedBackward", saved, dwdh, grad, h0, tau);
    }
    static const auto backward = op<decltype(softmax_saved_backward)>("era::softmax_logits_saved_backward");
    at::AutoDispatchBelowADInplaceOrView below;
    return backward.call(saved, dwdh, grad, h0, tau);
}

}  // namespace

// The ops' schemas are defined by era_torch (torch.library.custom_op) before this library is
// loaded; only their CPU and AutogradCPU kernels are registered here.
TORCH_LIBRARY_IMPL(era, CPU, m) {
    m.impl("gaussian_log_std", &gaussian_forward);
    m.impl("gaussian_log_std_backward", &gaussian_backward);
    m.impl("softmax_logits", &softmax_forward);
    m.impl("softmax_logits_backward", &softmax_backward);
    m.impl("gaussian_log_std_saved", &gaussian_saved_forward);
    m.impl("gaussian_log_std_saved_backward", &gaussian_saved_backward);
    m.impl("softmax_logits_saved", &softmax_saved_forward);
    m.impl("softmax_logits_saved_backward", &softmax_saved_backward);
}

TORCH_LIBRARY_IMPL(era, AutogradCPU, m) {
    m.impl("gaussian_log_std", &gaussian_forward_autograd);
    m.impl("gaussian_log_std_backward", &gaussian_backward_autograd);
    m.impl("softmax_logits", &softmax_forward_autograd);
    m.impl("softmax_logits_backward", &softmax_backward_autograd);
    m.impl("gaussian_log_std_saved", &gaussian_saved_forward_autograd);
    m.impl("gaussian_log_std_saved_backward", &gaussian_saved_backward_autograd);
    m.impl("softmax_logits_saved", &softmax_saved_forward_autograd);
    m.impl("softmax_logits_saved_backward", &softmax_saved_backward_autograd);
}
