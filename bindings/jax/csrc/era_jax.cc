// era_jax: XLA FFI handlers for the era C ABI.
//
// This file holds no ERA math. Each handler decodes the XLA buffers and the
// static attributes of one custom call, wraps the buffers into borrowed DLPack
// DLTensor descriptors (no copies: the descriptors point at XLA's own memory
// and dimension arrays), calls one era_* C function and turns a failed status
// into an ffi::Error carrying era_last_error().
//
// Every operation is listed once, in ERA_JAX_OPS at the end of this file, or in
// ERA_JAX_CPU_OPS for those whose era functions take host memory only. The
// lists define the exported handlers `era_jax_<op>_cpu` (and, in a CUDA build,
// with ERA_JAX_CUDA defined, `era_jax_<op>_cuda` for the ops of ERA_JAX_OPS,
// taking the stream from the call context) and the table that
// `era_jax_target()` hands out: target name `era_<op>` with its CPU and CUDA
// handlers (NULL for the CPU-only ops). Python (era_jax/_native.py) reads that
// table, wraps each handler in a PyCapsule and registers it with
// jax.ffi.register_ffi_target under the target name for its platform.
//
// Heads are built from the attributes with era_config_default + era_head_new
// and cached per configuration (heads are immutable and thread-safe for
// forward/backward, so one head serves every call with that configuration).

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
// After the XLA headers: era.h defines a few unprefixed macros.
#include "era.h"

namespace ffi = xla::ffi;

namespace {

// ----------------------------------------------------------------- platforms

// Where the buffers of a call live and which stream to pass to era.
struct Place {
  DLDevice device;
  void* stream;
};

inline Place cpu_place() { return Place{DLDevice{kDLCPU, 0}, nullptr}; }

// ------------------------------------------------------------------- buffers

// Maps an XLA element type to a DLPack one; false for types era never takes.
bool dl_dtype(ffi::DataType t, DLDataType* out) {
  switch (t) {
    case ffi::DataType::F32: *out = DLDataType{kDLFloat, 32, 1}; return true;
    case ffi::DataType::F64: *out = DLDataType{kDLFloat, 64, 1}; return true;
    case ffi::DataType::F16: *out = DLDataType{kDLFloat, 16, 1}; return true;
    case ffi::DataType::BF16: *out = DLDataType{kDLBfloat, 16, 1}; return true;
    case ffi::DataType::S32: *out = DLDataType{kDLInt, 32, 1}; return true;
    case ffi::DataType::S64: *out = DLDataType{kDLInt, 64, 1}; return true;
    default: return false;
  }
}

// A borrowed descriptor of an XLA buffer (row-major: strides = NULL). The
// shape pointer aliases XLA's dimension array, which outlives the call.
struct Tensor {
  DLTensor t{};
  bool ok = false;

  Tensor(const Place& p, ffi::DataType dtype, void* data, ffi::Span<const int64_t> dims) {
    ok = dl_dtype(dtype, &t.dtype);
    t.data = data;
    t.device = p.device;
    t.ndim = static_cast<int32_t>(dims.size());
    t.shape = const_cast<int64_t*>(dims.begin());
    t.strides = nullptr;
    t.byte_offset = 0;
  }
  Tensor(const Place& p, const ffi::AnyBuffer& b)
      : Tensor(p, b.element_type(), b.untyped_data(), b.dimensions()) {}
  Tensor(const Place& p, ffi::Result<ffi::AnyBuffer>& b)
      : Tensor(p, b->element_type(), b->untyped_data(), b->dimensions()) {}

  DLTensor* get() { return &t; }
};

// Checks that every descriptor got a supported dtype (the Python side checks
// dtypes before the call; this is the backstop).
template <typename... Ts>
ffi::Error check_dtypes(const char* op, Ts&... ts) {
  bool all = (ts.ok && ...);
  if (!all) {
    return ffi::Error::InvalidArgument(std::string(op) + ": a buffer has an element type era does not support");
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------------------- errors

ffi::ErrorCode error_code(EraStatus s) {
  switch (s) {
    case ERA_STATUS_UNSUPPORTED_DEVICE: return ffi::ErrorCode::kUnimplemented;
    case ERA_STATUS_INTERNAL: return ffi::ErrorCode::kInternal;
    case ERA_STATUS_BUFFER_TOO_SMALL: return ffi::ErrorCode::kResourceExhausted;
    default: return ffi::ErrorCode::kInvalidArgument;
  }
}

// "era: <function>: ERA_STATUS_...: <message>".
ffi::Error era_error(const char* fn, EraStatus s) {
  std::string msg(era_last_error(nullptr, 0), '\0');
  era_last_error(msg.data(), msg.size() + 1);
  return ffi::Error(error_code(s), std::string("era: ") + fn + ": " + era_status_str(s) + ": " + msg);
}

// Calls era function `fn` with the parenthesised `args`; returns its error on failure.
#define ERA_TRY(fn, args)                                               \
  do {                                                                  \
    EraStatus era_status_ = fn args;                                    \
    if (era_status_ != ERA_STATUS_OK) return era_error(#fn, era_status_); \
  } while (0)

// -------------------------------------------------------------- head cache

// One head per distinct configuration, kept for the life of the process
// (there are few distinct configurations; heads are small). A thread-local
// one-entry cache skips the lock on the hot path.
// The cache key: every field of the config by value (not the raw struct
// bytes, whose padding is unspecified), as a fixed array of 64-bit words.
using ConfigKey = std::array<uint64_t, 21>;

ConfigKey config_key(const EraConfig& c) {
  ConfigKey k{};
  size_t i = 0;
  auto put = [&k, &i](auto v) {
    uint64_t w = 0;
    static_assert(sizeof(v) <= sizeof(w), "config field wider than 64 bits");
    std::memcpy(&w, &v, sizeof(v));
    k[i++] = w;
  };
  put(c.kind);
  put(c.target_entropy);
  put(c.dim);
  put(c.log_std_min);
  put(c.log_std_max);
  put(c.delta);
  put(c.delta_optimizer);
  put(c.delta_lr);
  put(c.delta_beta1);
  put(c.delta_beta2);
  put(c.delta_eps);
  put(c.num_classes);
  put(c.tau);
  put(c.k);
  put(c.omega_low);
  put(c.omega_high);
  put(c.top_fraction);
  put(c.temperature);
  put(c.advantage_scaling);
  put(c.vocab_topk);
  put(c.num_threads);
  return k;
}

struct ConfigKeyHash {
  size_t operator()(const ConfigKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (uint64_t w : k) {
      h ^= w;
      h *= 1099511628211ull;
    }
    return static_cast<size_t>(h);
  }
};

ffi::Error cached_head(const EraConfig& cfg, const EraHead** out) {
  const ConfigKey key = config_key(cfg);
  // one entry per thread: the hot path (the same op called again) takes no lock
  thread_local ConfigKey last_key{};
  thread_local const EraHead* last_head = nullptr;
  if (last_head != nullptr && last_key == key) {
    *out = last_head;
    return ffi::Error::Success();
  }
  static std::mutex mu;
  static auto* heads = new std::unordered_map<ConfigKey, EraHead*, ConfigKeyHash>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = heads->find(key);
  if (it == heads->end()) {
    EraHead* h = nullptr;
    ERA_TRY(era_head_new, (&cfg, &h));
    it = heads->emplace(key, h).first;
  }
  last_key = key;
  last_head = it->second;
  *out = it->second;
  return ffi::Error::Success();
}

// A config with era's defaults for `kind`.
ffi::Error default_config(EraHeadKind kind, EraConfig* cfg) {
  std::memset(cfg, 0, sizeof *cfg);
  ERA_TRY(era_config_default, (kind, cfg));
  return ffi::Error::Success();
}

// The few values a small head's handler takes (its width and its attributes), as raw bits, and
// the head they gave on this thread last time: a handler called again with the same values
// (every step of a training loop) finds its head here without building a config, calling
// era_config_default or hashing the 21 fields (BENCHMARKS.md, "The handler's head
// lookup"). Bits, not values: -0.0 and 0.0, or two NaNs, are different keys, and a value era
// refuses never reaches this cache (era_head_new fails first).
struct AttrKey {
  std::array<uint64_t, 4> w{};
  AttrKey(int64_t n, double a, double b, double c) {
    std::memcpy(&w[0], &n, sizeof n);
    std::memcpy(&w[1], &a, sizeof a);
    std::memcpy(&w[2], &b, sizeof b);
    std::memcpy(&w[3], &c, sizeof c);
  }
  bool operator==(const AttrKey& o) const { return w == o.w; }
};

// One such cache per kind of head and per thread: a Gaussian and a softmax head in the same
// program do not evict each other.
template <int Kind>
struct LastHead {
  static thread_local AttrKey key;
  static thread_local const EraHead* head;
};
template <int Kind>
thread_local AttrKey LastHead<Kind>::key{0, 0.0, 0.0, 0.0};
template <int Kind>
thread_local const EraHead* LastHead<Kind>::head = nullptr;

// The head for `key` from `make` (which builds the config and goes through cached_head),
// through this thread's last head of kind `Kind`.
template <int Kind, typename Make>
ffi::Error last_head(const AttrKey& key, Make make, const EraHead** out) {
  using L = LastHead<Kind>;
  if (L::head != nullptr && L::key == key) {
    *out = L::head;
    return ffi::Error::Success();
  }
  if (auto e = make(out); e.failure()) return e;
  L::key = key;
  L::head = *out;
  return ffi::Error::Success();
}

// The Gaussian head used with a per-call delta. Its stored delta is never
// used (era_gaussian_*_delta take delta as a buffer); it is 0 when the target
// is feasible on its own, and otherwise a value far inside the feasible range
// so that feasibility is decided per call, from the delta buffer.
ffi::Error gaussian_head_uncached(int64_t dim, double h0, double lo, double hi, const EraHead** out) {
  EraConfig cfg;
  if (auto e = default_config(ERA_HEAD_KIND_GAUSSIAN, &cfg); e.failure()) return e;
  cfg.dim = dim < 0 ? 0 : static_cast<uint64_t>(dim);
  cfg.target_entropy = h0;
  cfg.log_std_min = lo;
  cfg.log_std_max = hi;
  double max_entropy = static_cast<double>(cfg.dim) * (hi + 0.5 * ERA_LN_2PI_E);
  cfg.delta = (h0 <= max_entropy) ? 0.0 : -(std::fabs(h0) + std::fabs(max_entropy) + 1.0);
  cfg.delta_optimizer = ERA_DELTA_OPTIMIZER_FIXED;
  return cached_head(cfg, out);
}

ffi::Error gaussian_head(int64_t dim, double h0, double lo, double hi, const EraHead** out) {
  return last_head<ERA_HEAD_KIND_GAUSSIAN>(
      AttrKey(dim, h0, lo, hi), [&](const EraHead** h) { return gaussian_head_uncached(dim, h0, lo, hi, h); }, out);
}

ffi::Error softmax_head(int64_t n, double h0, double tau, const EraHead** out) {
  auto make = [&](const EraHead** h) {
    EraConfig cfg;
    if (auto e = default_config(ERA_HEAD_KIND_SOFTMAX, &cfg); e.failure()) return e;
    cfg.num_classes = n < 0 ? 0 : static_cast<uint64_t>(n);
    cfg.target_entropy = h0;
    cfg.tau = tau;
    return cached_head(cfg, h);
  };
  return last_head<ERA_HEAD_KIND_SOFTMAX>(AttrKey(n, h0, tau, 0.0), make, out);
}

struct TokenAttrs {
  double k, omega_low, omega_high, top_fraction, temperature;
  int64_t advantage_scaling, vocab_topk;
};

ffi::Error token_head(const TokenAttrs& a, const EraHead** out) {
  EraConfig cfg;
  if (auto e = default_config(ERA_HEAD_KIND_TOKEN, &cfg); e.failure()) return e;
  cfg.k = a.k;
  cfg.omega_low = a.omega_low;
  cfg.omega_high = a.omega_high;
  cfg.top_fraction = a.top_fraction;
  cfg.temperature = a.temperature;
  cfg.advantage_scaling = a.advantage_scaling != 0 ? 1u : 0u;
  cfg.vocab_topk = a.vocab_topk < 0 ? UINT64_MAX : static_cast<uint64_t>(a.vocab_topk);
  return cached_head(cfg, out);
}

int64_t last_dim(const ffi::AnyBuffer& b) {
  auto d = b.dimensions();
  return d.size() == 0 ? 0 : d.back();
}

// ------------------------------------------------------------ implementations
//
// Each takes the Place first; the binding supplies it per platform.

ffi::Error GaussianFwd(Place p, ffi::AnyBuffer z, ffi::AnyBuffer delta, ffi::Result<ffi::AnyBuffer> out,
                       double target_entropy, double log_std_min, double log_std_max) {
  const EraHead* h;
  if (auto e = gaussian_head(last_dim(z), target_entropy, log_std_min, log_std_max, &h); e.failure()) return e;
  Tensor tz(p, z), td(p, delta), to(p, out);
  if (auto e = check_dtypes("era_gaussian_fwd", tz, td, to); e.failure()) return e;
  ERA_TRY(era_gaussian_forward_delta, (h, tz.get(), td.get(), to.get(), p.stream));
  return ffi::Error::Success();
}

ffi::Error GaussianBwd(Place p, ffi::AnyBuffer z, ffi::AnyBuffer delta, ffi::AnyBuffer g,
                       ffi::Result<ffi::AnyBuffer> gz, ffi::Result<ffi::AnyBuffer> gdelta,
                       double target_entropy, double log_std_min, double log_std_max) {
  const EraHead* h;
  if (auto e = gaussian_head(last_dim(z), target_entropy, log_std_min, log_std_max, &h); e.failure()) return e;
  Tensor tz(p, z), td(p, delta), tg(p, g), tgz(p, gz), tgd(p, gdelta);
  if (auto e = check_dtypes("era_gaussian_bwd", tz, td, tg, tgz, tgd); e.failure()) return e;
  ERA_TRY(era_gaussian_backward_delta, (h, tz.get(), td.get(), tg.get(), tgz.get(), tgd.get(), p.stream));
  return ffi::Error::Success();
}

ffi::Error SoftmaxFwd(Place p, ffi::AnyBuffer z, ffi::Result<ffi::AnyBuffer> out, double target_entropy, double tau) {
  const EraHead* h;
  if (auto e = softmax_head(last_dim(z), target_entropy, tau, &h); e.failure()) return e;
  Tensor tz(p, z), to(p, out);
  if (auto e = check_dtypes("era_softmax_fwd", tz, to); e.failure()) return e;
  ERA_TRY(era_head_forward, (h, tz.get(), to.get(), p.stream));
  return ffi::Error::Success();
}

ffi::Error SoftmaxBwd(Place p, ffi::AnyBuffer z, ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> gz,
                      double target_entropy, double tau) {
  const EraHead* h;
  if (auto e = softmax_head(last_dim(z), target_entropy, tau, &h); e.failure()) return e;
  Tensor tz(p, z), tg(p, g), tgz(p, gz);
  if (auto e = check_dtypes("era_softmax_bwd", tz, tg, tgz); e.failure()) return e;
  ERA_TRY(era_head_backward, (h, tz.get(), tg.get(), tgz.get(), p.stream));
  return ffi::Error::Success();
}

ffi::Error TokenFwd(Place p, ffi::AnyBuffer logits, ffi::AnyBuffer labels, ffi::AnyBuffer ids, ffi::AnyBuffer adv,
                    ffi::Result<ffi::AnyBuffer> logp, ffi::Result<ffi::AnyBuffer> ent,
                    ffi::Result<ffi::AnyBuffer> scale, ffi::Result<ffi::AnyBuffer> adv_out,
                    ffi::Result<ffi::AnyBuffer> resp_ent, TokenAttrs a) {
  const EraHead* h;
  if (auto e = token_head(a, &h); e.failure()) return e;
  Tensor tl(p, logits), ty(p, labels), tr(p, ids), ta(p, adv), tlp(p, logp), te(p, ent), ts(p, scale),
      tao(p, adv_out), tre(p, resp_ent);
  if (auto e = check_dtypes("era_token_fwd", tl, ty, tr, ta, tlp, te, ts, tao, tre); e.failure()) return e;
  ERA_TRY(era_token_forward, (h, tl.get(), ty.get(), tr.get(), ta.get(), tlp.get(), te.get(), ts.get(), tao.get(),
                            tre.get(), p.stream));
  return ffi::Error::Success();
}

ffi::Error TokenBwd(Place p, ffi::AnyBuffer logits, ffi::AnyBuffer labels, ffi::AnyBuffer ids, ffi::AnyBuffer scale,
                    ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> glogits, TokenAttrs a) {
  const EraHead* h;
  if (auto e = token_head(a, &h); e.failure()) return e;
  Tensor tl(p, logits), ty(p, labels), tr(p, ids), ts(p, scale), tg(p, g), tgl(p, glogits);
  if (auto e = check_dtypes("era_token_bwd", tl, ty, tr, ts, tg, tgl); e.failure()) return e;
  ERA_TRY(era_token_backward, (h, tl.get(), ty.get(), tr.get(), ts.get(), tg.get(), tgl.get(), p.stream));
  return ffi::Error::Success();
}

// ------------------------------------------------------------------ bindings
//
// The bindings are written once, parameterised by the platform P:
// `P::Bind()` starts an ffi::Ffi binding (with the platform's context values
// first), and `P::wrap(impl)` turns those context values into the Place that
// the implementations take first.

struct Cpu {
  static auto Bind() { return ffi::Ffi::Bind(); }
  template <typename F>
  static auto wrap(F f) {
    return [f](auto... args) { return f(cpu_place(), args...); };
  }
};

#ifdef ERA_JAX_CUDA
// The CUDA platform: the stream comes from the call context and is passed to
// era as `stream`; the buffers are device memory of the call's device.
struct Cuda {
  static auto Bind() { return ffi::Ffi::Bind().Ctx<ffi::PlatformStream<void*>>().Ctx<ffi::DeviceOrdinal>(); }
  template <typename F>
  static auto wrap(F f) {
    return [f](void* stream, int32_t ordinal, auto... args) {
      return f(Place{DLDevice{kDLCUDA, ordinal}, stream}, args...);
    };
  }
};
#endif

template <typename P>
auto gaussian_fwd_binding() {
  return P::Bind()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<double>("target_entropy")
      .template Attr<double>("log_std_min")
      .template Attr<double>("log_std_max");
}

template <typename P>
auto gaussian_bwd_binding() {
  return P::Bind()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>()
      .template Ret<ffi::AnyBuffer>()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<double>("target_entropy")
      .template Attr<double>("log_std_min")
      .template Attr<double>("log_std_max");
}

template <typename P>
auto softmax_fwd_binding() {
  return P::Bind()
      .template Arg<ffi::AnyBuffer>()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<double>("target_entropy")
      .template Attr<double>("tau");
}

template <typename P>
auto softmax_bwd_binding() {
  return P::Bind()
      .template Arg<ffi::AnyBuffer>()
      .template Arg<ffi::AnyBuffer>()
      .template Ret<ffi::AnyBuffer>()
      .template Attr<double>("target_entropy")
      .template Attr<double>("tau");
}

template <typename B>
auto token_attrs(B b) {
  return std::move(b)
      .template Attr<double>("k")
      .template Attr<double>("omega_low")
      .template Attr<double>("omega_high")
      .template Attr<double>("top_fraction")
      .template Attr<double>("temperature")
      .template Attr<int64_t>("advantage_scaling")
      .template Attr<int64_t>("vocab_topk");
}

template <typename P>
auto token_fwd_binding() {
  return token_attrs(P::Bind()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>());
}

template <typename P>
auto token_bwd_binding() {
  return token_attrs(P::Bind()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Arg<ffi::AnyBuffer>()
                         .template Ret<ffi::AnyBuffer>());
}

// Token attributes arrive as seven values; pack them.
inline auto token_fwd_impl() {
  return [](Place p, ffi::AnyBuffer l, ffi::AnyBuffer y, ffi::AnyBuffer r, ffi::AnyBuffer a,
            ffi::Result<ffi::AnyBuffer> o1, ffi::Result<ffi::AnyBuffer> o2, ffi::Result<ffi::AnyBuffer> o3,
            ffi::Result<ffi::AnyBuffer> o4, ffi::Result<ffi::AnyBuffer> o5, double k, double wl, double wh,
            double rho, double t, int64_t scaling, int64_t topk) {
    return TokenFwd(p, l, y, r, a, o1, o2, o3, o4, o5, TokenAttrs{k, wl, wh, rho, t, scaling, topk});
  };
}

inline auto token_bwd_impl() {
  return [](Place p, ffi::AnyBuffer l, ffi::AnyBuffer y, ffi::AnyBuffer r, ffi::AnyBuffer s, ffi::AnyBuffer g,
            ffi::Result<ffi::AnyBuffer> o, double k, double wl, double wh, double rho, double t, int64_t scaling,
            int64_t topk) {
    return TokenBwd(p, l, y, r, s, g, o, TokenAttrs{k, wl, wh, rho, t, scaling, topk});
  };
}

// The split token forward: its impls, bindings and impls' wrappers.
#include "token_split.inc"

// The token head over vocabulary blocks: its handlers, bindings and impls.
#include "token_blocks.inc"

// The Gaussian head under a per-row active-dimension mask: its impls and bindings.
#include "gaussian_mask.inc"

// The head-free entropies: their impls and bindings.
#include "entropy.inc"

// The Gaussian and softmax heads with a saved softmax (CPU only): their impls and bindings.
#include "saved.inc"

// ----------------------------------------------------------------- metadata
//
// XLA asks every handler for its metadata (the FFI API version it was built
// for, and its traits) with a call frame that carries a metadata extension.
// The handlers here use only the parts of the FFI C API that exist since
// version 0.1, so they report 0.1: jaxlib accepts a handler whose version is
// not newer than its own, and a module built against a newer jaxlib's headers
// then loads into an older jaxlib as well.

bool is_metadata_query(const XLA_FFI_CallFrame* cf) {
  return cf->extension_start != nullptr && cf->extension_start->type == XLA_FFI_Extension_Metadata;
}

XLA_FFI_Error* answer_metadata(XLA_FFI_CallFrame* cf) {
  auto* ext = reinterpret_cast<XLA_FFI_Metadata_Extension*>(cf->extension_start);
  if (ext->metadata == nullptr) return nullptr;
  ext->metadata->api_version = XLA_FFI_Api_Version{XLA_FFI_Api_Version_STRUCT_SIZE, nullptr, 0, 1};
  ext->metadata->traits = 0;
  return nullptr;
}

template <typename Handler>
XLA_FFI_Error* call_v01(Handler* h, XLA_FFI_CallFrame* cf) {
  if (is_metadata_query(cf)) return answer_metadata(cf);
  return h->Call(cf);
}

}  // namespace

// ---------------------------------------------------------------- exports
//
// ERA_JAX_OPS(X) calls X(op, binding, impl) once per operation that runs on
// every platform; with ERA_JAX_CPU_OPS below, the lists of the operations of
// this library. Target name "era_<op>"; handlers era_jax_<op>_cpu and (CUDA
// build, ERA_JAX_OPS only) era_jax_<op>_cuda.

#define ERA_JAX_OPS(X)                                                   \
  X(gaussian_fwd, gaussian_fwd_binding, GaussianFwd)                     \
  X(gaussian_bwd, gaussian_bwd_binding, GaussianBwd)                     \
  X(gaussian_masked_fwd, gaussian_masked_fwd_binding, GaussianMaskedFwd) \
  X(gaussian_masked_bwd, gaussian_masked_bwd_binding, GaussianMaskedBwd) \
  X(softmax_fwd, softmax_fwd_binding, SoftmaxFwd)                        \
  X(softmax_bwd, softmax_bwd_binding, SoftmaxBwd)                        \
  X(token_fwd, token_fwd_binding, token_fwd_impl())                      \
  X(token_bwd, token_bwd_binding, token_bwd_impl())                      \
  X(token_columns, token_columns_binding, token_columns_impl())          \
  X(token_decide, token_decide_binding, token_decide_impl())             \
  X(token_columns_bwd, token_columns_bwd_binding, token_columns_bwd_impl()) \
  X(token_block_stats, token_block_stats_binding, token_block_stats_impl()) \
  X(token_stats_merge, token_stats_merge_binding, token_stats_merge_impl()) \
  X(token_stats_rebase, token_stats_rebase_binding, token_stats_rebase_impl()) \
  X(token_block_finish, token_block_finish_binding, token_block_finish_impl()) \
  X(token_block_bwd, token_block_bwd_binding, token_block_bwd_impl())  \
  X(gaussian_entropy, gaussian_entropy_binding, GaussianEntropy)         \
  X(softmax_entropy, softmax_entropy_binding, SoftmaxEntropy)            \
  X(truncated_normal_entropy, trunc_normal_binding, TruncNormalEntropy)

// ERA_JAX_CPU_OPS(X): the operations whose era functions take host memory only
// (CUDA buffers give ERA_STATUS_UNSUPPORTED_DEVICE): CPU handlers only, and a
// NULL CUDA handler in the table, so that Python registers them for the CPU.
#define ERA_JAX_CPU_OPS(X)                                                \
  X(gaussian_fwd_saved, gaussian_fwd_saved_binding, GaussianFwdSaved)   \
  X(gaussian_bwd_saved, gaussian_bwd_binding, GaussianBwdSaved)         \
  X(softmax_fwd_saved, softmax_fwd_saved_binding, SoftmaxFwdSaved)      \
  X(softmax_bwd_saved, softmax_bwd_saved_binding, SoftmaxBwdSaved)

// `ERA_JAX_EXPORT_CPU(op, binding, impl)` defines the C handler `era_jax_<op>_cpu`.
#define ERA_JAX_EXPORT_CPU(name, binding, impl)                              \
  extern "C" __attribute__((visibility("default"))) XLA_FFI_Error*           \
      era_jax_##name##_cpu(XLA_FFI_CallFrame* cf) {                          \
    static auto* handler = binding<Cpu>().To(Cpu::wrap(impl)).release();     \
    return call_v01(handler, cf);                                            \
  }

ERA_JAX_OPS(ERA_JAX_EXPORT_CPU)
ERA_JAX_CPU_OPS(ERA_JAX_EXPORT_CPU)

#ifdef ERA_JAX_CUDA
// CUDA handlers follow the CPU handlers' version rule: they report XLA FFI API
// 0.1, so that a module built against one jaxlib's headers loads into the
// jaxlib of a GPU machine (newer or older). Besides version 0.1 they decode the
// call's stream and device ordinal (XLA_FFI_Stream_Get, XLA_FFI_DeviceOrdinal_Get),
// which every jaxlib with CUDA FFI handlers provides.
#define ERA_JAX_EXPORT_CUDA(name, binding, impl)                             \
  extern "C" __attribute__((visibility("default"))) XLA_FFI_Error*           \
      era_jax_##name##_cuda(XLA_FFI_CallFrame* cf) {                         \
    static auto* handler = binding<Cuda>().To(Cuda::wrap(impl)).release();   \
    return call_v01(handler, cf);                                            \
  }

ERA_JAX_OPS(ERA_JAX_EXPORT_CUDA)
#define ERA_JAX_CUDA_HANDLER(name) era_jax_##name##_cuda
#else
#define ERA_JAX_CUDA_HANDLER(name) nullptr
#endif

namespace {

using Handler = XLA_FFI_Error* (*)(XLA_FFI_CallFrame*);

struct Target {
  const char* name;  // the XLA FFI target name, "era_<op>"
  Handler cpu;
  Handler cuda;  // nullptr unless built with ERA_JAX_CUDA, and for the CPU-only ops
};

#define ERA_JAX_TARGET(name, binding, impl) Target{"era_" #name, era_jax_##name##_cpu, ERA_JAX_CUDA_HANDLER(name)},
#define ERA_JAX_CPU_TARGET(name, binding, impl) Target{"era_" #name, era_jax_##name##_cpu, nullptr},

const Target kTargets[] = {ERA_JAX_OPS(ERA_JAX_TARGET) ERA_JAX_CPU_OPS(ERA_JAX_CPU_TARGET)};

}  // namespace

// The table of XLA FFI targets, read by Python to register every one: entry
// `index` gives the target name and stores its CPU handler in `*cpu` and its
// CUDA handler (NULL in a build without CUDA and for the ops of ERA_JAX_CPU_OPS)
// in `*cuda` (either may be NULL).
// Returns NULL past the last entry.
extern "C" __attribute__((visibility("default"))) const char* era_jax_target(size_t index, void** cpu,
                                                                              void** cuda) {
  if (index >= sizeof(kTargets) / sizeof(kTargets[0])) return nullptr;
  const Target& t = kTargets[index];
  if (cpu != nullptr) *cpu = reinterpret_cast<void*>(t.cpu);
  if (cuda != nullptr) *cuda = reinterpret_cast<void*>(t.cuda);
  return t.name;
}
