/*
 * era.hpp: header-only C++17 wrapper of the era C API (era.h).
 *
 *   #include <era.hpp>
 *
 *   era::Head head(era::gaussian_config(6, -6.0));   // throws era::Error on failure
 *   std::vector<float> z(4 * 6), out(4 * 6);
 *   head.forward(z.data(), out.data(), {4, 6});
 *
 * Every failing C call becomes an era::Error carrying the status code and the thread's
 * last-error message. Heads are move-only RAII owners of EraHead*. Tensors are passed as
 * DLPack DLTensor descriptors (borrowed; no copies), or, for host buffers, as a pointer
 * plus a shape, from which the wrapper builds a row-major CPU DLTensor.
 *
 * No math lives here: every operation is one call into the C library.
 */
#ifndef ERA_HPP
#define ERA_HPP

#include "era.h"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace era {

/* ------------------------------------------------------------------ errors */

/// Copies the message of the last failure on this thread (era_last_error); "" when none.
inline std::string last_error() {
    std::size_t len = era_last_error(nullptr, 0);
    if (len == 0) {
        return std::string();
    }
    std::vector<char> buf(len + 1, '\0');
    len = era_last_error(buf.data(), buf.size());
    return std::string(buf.data(), len < buf.size() ? len : buf.size() - 1);
}

/// The exception thrown for every failing era call. what() is "ERA_STATUS_NAME: message".
class Error : public std::runtime_error {
public:
    /// Builds an error from a status code and a message (usually the thread's last error).
    Error(EraStatus status, const std::string& message)
        : std::runtime_error(std::string(era_status_str(status)) + ": " + message),
          status_(status), message_(message) {}

    /// The C status code (ERA_STATUS_*).
    EraStatus status() const noexcept { return status_; }

    /// The library's message for this failure, without the status name.
    const std::string& message() const noexcept { return message_; }

    /// The static name of the status code, e.g. "ERA_STATUS_INVALID_SHAPE".
    const char* status_name() const noexcept { return era_status_str(status_); }

private:
    EraStatus status_;
    std::string message_;
};

/// Throws era::Error (with the thread's last-error message) unless status is ERA_STATUS_OK.
inline void check(EraStatus status) {
    if (status != ERA_STATUS_OK) {
        throw Error(status, last_error());
    }
}

/* ------------------------------------------------------------------ versions */

/// The library's version string, e.g. "0.1.0" (era_version()).
inline std::string version() { return std::string(era_version()); }

/// The library's ABI version (era_abi_version()).
inline std::uint32_t abi_version() { return era_abi_version(); }

/// True when the loaded library has the ABI version this header was compiled against.
inline bool abi_compatible() { return era_abi_version() == ERA_ABI_VERSION; }

/* ------------------------------------------------------------------ tensors */

namespace detail {
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DLDataType value = {kDLFloat, 32, 1}; };
template <> struct dtype_of<double> { static constexpr DLDataType value = {kDLFloat, 64, 1}; };
template <> struct dtype_of<std::int32_t> { static constexpr DLDataType value = {kDLInt, 32, 1}; };
template <> struct dtype_of<std::int64_t> { static constexpr DLDataType value = {kDLInt, 64, 1}; };
}  // namespace detail

/// The DLPack dtype of T (float, double, int32_t, int64_t; const is ignored).
template <typename T> constexpr DLDataType dtype() {
    return detail::dtype_of<typename std::remove_cv<T>::type>::value;
}

/// A row-major CPU DLTensor together with the shape array it points to.
/// Copying or moving keeps `dl.shape` pointing at this object's own shape. The data are
/// borrowed: the buffer must outlive every use of the descriptor.
struct Tensor {
    std::vector<std::int64_t> shape;  ///< the extents; dl.shape points here
    DLTensor dl;                      ///< the descriptor handed to the C API

    /// Describes `data` (host memory, row-major) with element type `dtype` and `shape`.
    Tensor(void* data, DLDataType dtype, std::vector<std::int64_t> extents)
        : shape(std::move(extents)), dl() {
        dl.data = data;
        dl.device.device_type = kDLCPU;
        dl.device.device_id = 0;
        dl.ndim = static_cast<std::int32_t>(shape.size());
        dl.dtype = dtype;
        dl.strides = nullptr;
        dl.byte_offset = 0;
        repoint();
    }
    /// Copies the descriptor (the data stay shared).
    Tensor(const Tensor& other) : shape(other.shape), dl(other.dl) { repoint(); }
    /// Moves the descriptor.
    Tensor(Tensor&& other) noexcept : shape(std::move(other.shape)), dl(other.dl) { repoint(); }
    /// Copy-assigns the descriptor.
    Tensor& operator=(const Tensor& other) {
        shape = other.shape;
        dl = other.dl;
        repoint();
        return *this;
    }
    /// Move-assigns the descriptor.
    Tensor& operator=(Tensor&& other) noexcept {
        shape = std::move(other.shape);
        dl = other.dl;
        repoint();
        return *this;
    }

    /// The descriptor, for the DLTensor overloads.
    operator const DLTensor&() const noexcept { return dl; }
    /// The mutable descriptor, for outputs.
    operator DLTensor&() noexcept { return dl; }

private:
    void repoint() noexcept { dl.shape = shape.empty() ? nullptr : shape.data(); }
};

/// Describes a host buffer of T (float, double, int32_t, int64_t, possibly const) with the
/// given row-major shape. The C API never writes through an input descriptor, so a const
/// buffer is fine as an input; do not pass a descriptor of a const buffer as an output.
template <typename T> Tensor make_tensor(T* data, std::vector<std::int64_t> shape) {
    return Tensor(const_cast<void*>(static_cast<const volatile void*>(data)), dtype<T>(),
                  std::move(shape));
}

/// make_tensor with a braced shape: make_tensor(ptr, {rows, cols}).
template <typename T> Tensor make_tensor(T* data, std::initializer_list<std::int64_t> shape) {
    return make_tensor(data, std::vector<std::int64_t>(shape));
}

/* ------------------------------------------------------------------ configs */

/// era_config_default(kind): every field at its documented default.
inline EraConfig default_config(EraHeadKind kind) {
    EraConfig config{};
    config.struct_size = static_cast<std::uint32_t>(sizeof(EraConfig));
    check(era_config_default(kind, &config));
    return config;
}

/// A Gaussian head config: action dimension `dim`, target entropy `target_entropy`
/// (total nats for the D-dimensional Gaussian). Adjust log_std_min/max, delta_* afterwards.
inline EraConfig gaussian_config(std::uint64_t dim, double target_entropy) {
    EraConfig config = default_config(ERA_HEAD_KIND_GAUSSIAN);
    config.dim = dim;
    config.target_entropy = target_entropy;
    return config;
}

/// A softmax head config: `num_classes` classes, target entropy `target_entropy` (nats).
inline EraConfig softmax_config(std::uint64_t num_classes, double target_entropy) {
    EraConfig config = default_config(ERA_HEAD_KIND_SOFTMAX);
    config.num_classes = num_classes;
    config.target_entropy = target_entropy;
    return config;
}

/// A token head config with the official defaults (k = 2, omega 0.45 / 3.0, rho = 0.2, T = 1).
inline EraConfig token_config() { return default_config(ERA_HEAD_KIND_TOKEN); }

/* ------------------------------------------------------------------ token outputs */

/// The per-token outputs of Head::token_forward's host-buffer overload (each of length N).
template <typename T> struct TokenOutputs {
    std::vector<T> logprobs;          ///< logp'_t (0 for masked tokens)
    std::vector<T> entropy;           ///< H_t, entropy of softmax(logits_t / T)
    std::vector<T> scale;             ///< c_t in {k, 1, 1/k}
    std::vector<T> advantages;        ///< A'_t
    std::vector<T> response_entropy;  ///< Hresp of the token's response (0 for masked tokens)
};

/* ------------------------------------------------------------------ heads */

/// An ERA head (Gaussian, softmax or token): a move-only owner of an EraHead*.
/// forward/backward/entropy are const and may run concurrently from several threads;
/// set_delta/update_delta are synchronised by the library.
class Head {
public:
    /// Creates a head from a config (era_head_new). Throws era::Error on invalid configs.
    explicit Head(const EraConfig& config) { check(era_head_new(&config, &handle_)); }

    /// Loads a head saved by to_json (era_head_from_json).
    static Head from_json(const std::string& json) {
        EraHead* handle = nullptr;
        check(era_head_from_json(json.c_str(), &handle));
        return Head(handle);
    }

    /// Takes ownership of a handle from the C API (may be null: an empty head).
    static Head adopt(EraHead* handle) noexcept { return Head(handle); }

    /// Frees the head (era_head_free).
    ~Head() { era_head_free(handle_); }

    Head(const Head&) = delete;
    Head& operator=(const Head&) = delete;
    /// Moves ownership; `other` becomes empty.
    Head(Head&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
    /// Moves ownership; the previously owned head is freed.
    Head& operator=(Head&& other) noexcept {
        if (this != &other) {
            era_head_free(handle_);
            handle_ = other.handle_;
            other.handle_ = nullptr;
        }
        return *this;
    }

    /// The C handle (still owned by this object), for calls the wrapper does not cover.
    EraHead* get() const noexcept { return handle_; }
    /// Gives up ownership of the C handle; the caller must era_head_free it.
    EraHead* release() noexcept {
        EraHead* handle = handle_;
        handle_ = nullptr;
        return handle;
    }
    /// False for a moved-from head.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The kind of head (ERA_HEAD_KIND_GAUSSIAN, _SOFTMAX or _TOKEN).
    EraHeadKind kind() const {
        EraHeadKind kind{};
        check(era_head_kind(handle_, &kind));
        return kind;
    }

    /// The head's configuration; `delta` holds the current (possibly learned) delta.
    EraConfig config() const {
        EraConfig config{};
        config.struct_size = static_cast<std::uint32_t>(sizeof(EraConfig));
        check(era_head_config(handle_, &config));
        return config;
    }

    /// Serialises the head (config and current delta) to JSON (era_head_to_json).
    std::string to_json() const {
        std::size_t length = 0;
        check(era_head_to_json(handle_, nullptr, 0, &length));  // size query
        std::vector<char> buf(length + 1, '\0');
        std::size_t written = 0;
        check(era_head_to_json(handle_, buf.data(), buf.size(), &written));
        return std::string(buf.data(), written);
    }

    /* -------- Gaussian and softmax heads */

    /// out = g(z); z and out have shape [..., D] (or [..., n]), same float dtype.
    void forward(const DLTensor& z, DLTensor& out, void* stream = nullptr) const {
        check(era_head_forward(handle_, &z, &out, stream));
    }
    /// forward on row-major host buffers of the given shape.
    void forward(const float* z, float* out, const std::vector<std::int64_t>& shape) const {
        forward_host(z, out, shape);
    }
    /// forward on row-major host buffers of the given shape.
    void forward(const double* z, double* out, const std::vector<std::int64_t>& shape) const {
        forward_host(z, out, shape);
    }

    /// grad_z = (d out / d z)^T grad_out (the VJP); all three have z's shape.
    void backward(const DLTensor& z, const DLTensor& grad_out, DLTensor& grad_z,
                  void* stream = nullptr) const {
        check(era_head_backward(handle_, &z, &grad_out, &grad_z, stream));
    }
    /// backward on row-major host buffers of the given shape.
    void backward(const float* z, const float* grad_out, float* grad_z,
                  const std::vector<std::int64_t>& shape) const {
        backward_host(z, grad_out, grad_z, shape);
    }
    /// backward on row-major host buffers of the given shape.
    void backward(const double* z, const double* grad_out, double* grad_z,
                  const std::vector<std::int64_t>& shape) const {
        backward_host(z, grad_out, grad_z, shape);
    }

    /// Entropy of each row of a head output: out [..., D] -> entropy [...].
    /// Gaussian: sum(out) + 0.5*D*ln(2*pi*e); softmax: H(softmax(out)); token: H(softmax(out/T)).
    void entropy(const DLTensor& out, DLTensor& entropy, void* stream = nullptr) const {
        check(era_head_entropy(handle_, &out, &entropy, stream));
    }
    /// entropy on host buffers: `out` has `shape`, `entropy` has shape[:-1] (one value per row).
    void entropy(const float* out, float* entropy, const std::vector<std::int64_t>& shape) const {
        entropy_host(out, entropy, shape);
    }
    /// entropy on host buffers: `out` has `shape`, `entropy` has shape[:-1] (one value per row).
    void entropy(const double* out, double* entropy, const std::vector<std::int64_t>& shape) const {
        entropy_host(out, entropy, shape);
    }

    /* -------- Gaussian head: delta */

    /// The current compensation delta (Gaussian heads only).
    double delta() const {
        double value = 0.0;
        check(era_head_delta(handle_, &value));
        return value;
    }
    /// Sets delta (clamped by the library so the target stays feasible).
    void set_delta(double delta) { check(era_head_set_delta(handle_, delta)); }
    /// One optimiser step of delta from the batch mean of the bounded policy's entropy;
    /// returns the new delta (unchanged for the FIXED optimiser).
    double update_delta(double mean_entropy) {
        double value = 0.0;
        check(era_head_update_delta(handle_, mean_entropy, &value));
        return value;
    }

    /// Gaussian forward with delta as an input tensor (0-d / 1 element, or one per row).
    void gaussian_forward_delta(const DLTensor& z, const DLTensor& delta, DLTensor& out,
                                void* stream = nullptr) const {
        check(era_gaussian_forward_delta(handle_, &z, &delta, &out, stream));
    }
    /// VJP of gaussian_forward_delta; grad_delta (may be null) has delta's shape.
    void gaussian_backward_delta(const DLTensor& z, const DLTensor& delta, const DLTensor& grad_out,
                                 DLTensor& grad_z, DLTensor* grad_delta = nullptr,
                                 void* stream = nullptr) const {
        check(era_gaussian_backward_delta(handle_, &z, &delta, &grad_out, &grad_z, grad_delta, stream));
    }

    /* -------- token head */

    /// Token forward: logits [..., V]; labels, response_ids (int32/int64), advantages [...];
    /// writes logprobs, entropy, scale, advantages_out [...] and, if non-null, response_entropy.
    void token_forward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                       const DLTensor& advantages, DLTensor& logprobs_out, DLTensor& entropy_out,
                       DLTensor& scale_out, DLTensor& advantages_out,
                       DLTensor* response_entropy_out = nullptr, void* stream = nullptr) const {
        check(era_token_forward(handle_, &logits, &labels, &response_ids, &advantages, &logprobs_out,
                                &entropy_out, &scale_out, &advantages_out, response_entropy_out,
                                stream));
    }
    /// Token forward on host buffers: logits [num_tokens, vocab], the rest [num_tokens].
    TokenOutputs<float> token_forward(const float* logits, const std::int64_t* labels,
                                      const std::int64_t* response_ids, const float* advantages,
                                      std::int64_t num_tokens, std::int64_t vocab) const {
        return token_forward_host(logits, labels, response_ids, advantages, num_tokens, vocab);
    }
    /// Token forward on host buffers: logits [num_tokens, vocab], the rest [num_tokens].
    TokenOutputs<double> token_forward(const double* logits, const std::int64_t* labels,
                                       const std::int64_t* response_ids, const double* advantages,
                                       std::int64_t num_tokens, std::int64_t vocab) const {
        return token_forward_host(logits, labels, response_ids, advantages, num_tokens, vocab);
    }

    /// Token backward: grad_logits_out (logits' shape) from grad_logprobs and the forward's scale.
    void token_backward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                        const DLTensor& scale, const DLTensor& grad_logprobs,
                        DLTensor& grad_logits_out, void* stream = nullptr) const {
        check(era_token_backward(handle_, &logits, &labels, &response_ids, &scale, &grad_logprobs,
                                 &grad_logits_out, stream));
    }
    /// Token backward on host buffers: logits/grad_logits [num_tokens, vocab], the rest [num_tokens].
    void token_backward(const float* logits, const std::int64_t* labels,
                        const std::int64_t* response_ids, const float* scale,
                        const float* grad_logprobs, float* grad_logits, std::int64_t num_tokens,
                        std::int64_t vocab) const {
        token_backward_host(logits, labels, response_ids, scale, grad_logprobs, grad_logits,
                            num_tokens, vocab);
    }
    /// Token backward on host buffers: logits/grad_logits [num_tokens, vocab], the rest [num_tokens].
    void token_backward(const double* logits, const std::int64_t* labels,
                        const std::int64_t* response_ids, const double* scale,
                        const double* grad_logprobs, double* grad_logits, std::int64_t num_tokens,
                        std::int64_t vocab) const {
        token_backward_host(logits, labels, response_ids, scale, grad_logprobs, grad_logits,
                            num_tokens, vocab);
    }

private:
    explicit Head(EraHead* handle) noexcept : handle_(handle) {}

    static std::vector<std::int64_t> rows_of(const std::vector<std::int64_t>& shape) {
        if (shape.empty()) {
            throw Error(ERA_STATUS_INVALID_SHAPE, "era.hpp: a head output needs rank >= 1");
        }
        return std::vector<std::int64_t>(shape.begin(), shape.end() - 1);
    }

    template <typename T>
    void forward_host(const T* z, T* out, const std::vector<std::int64_t>& shape) const {
        Tensor tz = make_tensor(z, shape), tout = make_tensor(out, shape);
        forward(tz, tout);
    }
    template <typename T>
    void backward_host(const T* z, const T* grad_out, T* grad_z,
                       const std::vector<std::int64_t>& shape) const {
        Tensor tz = make_tensor(z, shape), tg = make_tensor(grad_out, shape),
               tgz = make_tensor(grad_z, shape);
        backward(tz, tg, tgz);
    }
    template <typename T>
    void entropy_host(const T* out, T* entropy_out, const std::vector<std::int64_t>& shape) const {
        Tensor tout = make_tensor(out, shape), th = make_tensor(entropy_out, rows_of(shape));
        entropy(tout, th);
    }
    template <typename T>
    TokenOutputs<T> token_forward_host(const T* logits, const std::int64_t* labels,
                                       const std::int64_t* response_ids, const T* advantages,
                                       std::int64_t n, std::int64_t v) const {
        const std::size_t count = n > 0 ? static_cast<std::size_t>(n) : 0;
        TokenOutputs<T> r;
        r.logprobs.resize(count);
        r.entropy.resize(count);
        r.scale.resize(count);
        r.advantages.resize(count);
        r.response_entropy.resize(count);
        Tensor tl = make_tensor(logits, {n, v}), ty = make_tensor(labels, {n}),
               tr = make_tensor(response_ids, {n}), ta = make_tensor(advantages, {n}),
               tlp = make_tensor(r.logprobs.data(), {n}), th = make_tensor(r.entropy.data(), {n}),
               tc = make_tensor(r.scale.data(), {n}), tao = make_tensor(r.advantages.data(), {n}),
               thr = make_tensor(r.response_entropy.data(), {n});
        token_forward(tl, ty, tr, ta, tlp, th, tc, tao, &thr.dl);
        return r;
    }
    template <typename T>
    void token_backward_host(const T* logits, const std::int64_t* labels,
                             const std::int64_t* response_ids, const T* scale,
                             const T* grad_logprobs, T* grad_logits, std::int64_t n,
                             std::int64_t v) const {
        Tensor tl = make_tensor(logits, {n, v}), ty = make_tensor(labels, {n}),
               tr = make_tensor(response_ids, {n}), tc = make_tensor(scale, {n}),
               tg = make_tensor(grad_logprobs, {n}), tgl = make_tensor(grad_logits, {n, v});
        token_backward(tl, ty, tr, tc, tg, tgl);
    }

    EraHead* handle_ = nullptr;
};

/* ------------------------------------------------------------------ free functions */

/// Entropy of truncated normals TN(mean, exp(log_std), [low, high]) summed over the last
/// axis: mean, log_std [..., D] -> entropy [...] (docs/math.md#truncated-normal-entropy).
inline void truncated_normal_entropy(const DLTensor& mean, const DLTensor& log_std, double low,
                                     double high, DLTensor& entropy, void* stream = nullptr) {
    check(era_truncated_normal_entropy(&mean, &log_std, low, high, &entropy, stream));
}

}  // namespace era

#endif  // ERA_HPP
