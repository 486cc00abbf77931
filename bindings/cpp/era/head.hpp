/* era/head.hpp: head ownership, and the Gaussian and softmax heads.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_HEAD_HPP
#define ERA_HPP_HEAD_HPP

#include "config.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace era {
/* ================================================================== heads */

namespace detail {
/// Ownership of an EraHead* of one kind: construction, JSON, the configuration.
template <typename Config, EraHeadKind Kind> class HeadBase {
public:
    HeadBase(const HeadBase&) = delete;
    HeadBase& operator=(const HeadBase&) = delete;
    /// Moves ownership; `other` becomes empty.
    HeadBase(HeadBase&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
    /// Moves ownership; the head held before is freed.
    HeadBase& operator=(HeadBase&& other) noexcept {
        if (this != &other) {
            era_head_free(handle_);
            handle_ = other.handle_;
            other.handle_ = nullptr;
        }
        return *this;
    }

    /// The C handle (still owned here), for calls the wrapper does not cover.
    [[nodiscard]] EraHead* get() const noexcept { return handle_; }
    /// Gives up ownership: the caller must era_head_free the handle.
    [[nodiscard]] EraHead* release() noexcept {
        EraHead* h = handle_;
        handle_ = nullptr;
        return h;
    }
    /// False for a moved-from (or released) head.
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The configuration (for a Gaussian head, delta() is the current delta).
    [[nodiscard]] Config config() const {
        EraConfig c{};
        c.struct_size = static_cast<std::uint32_t>(sizeof(EraConfig));
        check(era_head_config(handle_, &c));
        return Config::from_c(c);
    }

    /// The head (configuration, learned delta, optimiser state) as JSON.
    [[nodiscard]] std::string to_json() const {
        std::size_t length = 0;
        check(era_head_to_json(handle_, nullptr, 0, &length));
        std::string buf(length + 1, '\0');
        std::size_t written = 0;
        check(era_head_to_json(handle_, &buf[0], buf.size(), &written));
        buf.resize(written);
        return buf;
    }

protected:
    explicit HeadBase(const Config& config) { check(era_head_new(&config.c_config(), &handle_)); }
    /// Takes `handle` if it is of this kind; frees it and throws otherwise when `owned`.
    HeadBase(EraHead* handle, bool free_on_error) {
        EraHeadKind kind = 0;
        EraStatus status = era_head_kind(handle, &kind);
        if (status != ERA_STATUS_OK || kind != Kind) {
            if (free_on_error) {
                era_head_free(handle);
            }
            check(status);
            throw wrong_kind(kind, Kind);
        }
        handle_ = handle;
    }
    static EraHead* load(const std::string& json) {
        EraHead* handle = nullptr;
        check(era_head_from_json(json.c_str(), &handle));
        return handle;
    }
    ~HeadBase() { era_head_free(handle_); }

    EraHead* handle_ = nullptr;
};

/// forward / backward / entropy of the Gaussian and softmax heads.
template <typename Derived, typename Config, EraHeadKind Kind> class RowHead : public HeadBase<Config, Kind> {
    using Base = HeadBase<Config, Kind>;

public:
    /// out = g(z) row-wise over the last axis; z and out [..., D] (or [..., n]), float or
    /// double, any strides; out may alias z.
    template <typename T> void forward(ConstView<T> z, View<T> out, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack();
        DLTensor tout = out.dlpack();
        check(era_head_forward(this->handle_, &tz, &tout, stream));
    }
    /// forward on DLTensors (any device the library supports).
    void forward(const DLTensor& z, DLTensor& out, void* stream = nullptr) const {
        check(era_head_forward(this->handle_, &z, &out, stream));
    }
    /// forward on contiguous ranges holding `shape` (checked).
    template <typename Z, typename Out, enable_if_input_t<Z> = 0, enable_if_output_t<Out> = 0>
    void forward(const Z& z, Out& out, const Shape& shape) const {
        static_assert(std::is_same<element_t<Z>, element_t<Out>>::value, "era: z and out differ in element type");
        forward(arg(z, shape, "z"), arg(out, shape, "out"));
    }
    /// forward into a new vector.
    template <typename Z, enable_if_input_t<Z> = 0>
    [[nodiscard]] std::vector<element_t<Z>> forward(const Z& z, const Shape& shape) const {
        std::vector<element_t<Z>> out(static_cast<std::size_t>(shape.numel()));
        forward(z, out, shape);
        return out;
    }

    /// grad_z = J(z)^T grad_out (the VJP); all three of z's shape and type; grad_z may
    /// alias z or grad_out.
    template <typename T>
    void backward(ConstView<T> z, ConstView<T> grad_out, View<T> grad_z, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack();
        check(era_head_backward(this->handle_, &tz, &tg, &tgz, stream));
    }
    /// backward on DLTensors.
    void backward(const DLTensor& z, const DLTensor& grad_out, DLTensor& grad_z, void* stream = nullptr) const {
        check(era_head_backward(this->handle_, &z, &grad_out, &grad_z, stream));
    }
    /// backward on contiguous ranges holding `shape` (checked).
    template <typename Z, typename G, typename GZ, enable_if_input_t<Z> = 0, enable_if_input_t<G> = 0,
              enable_if_output_t<GZ> = 0>
    void backward(const Z& z, const G& grad_out, GZ& grad_z, const Shape& shape) const {
        static_assert(std::is_same<element_t<Z>, element_t<G>>::value &&
                          std::is_same<element_t<Z>, element_t<GZ>>::value,
                      "era: z, grad_out and grad_z differ in element type");
        backward(arg(z, shape, "z"), arg(grad_out, shape, "grad_out"), arg(grad_z, shape, "grad_z"));
    }
    /// backward into a new vector.
    template <typename Z, typename G, enable_if_input_t<Z> = 0, enable_if_input_t<G> = 0>
    [[nodiscard]] std::vector<element_t<Z>> backward(const Z& z, const G& grad_out, const Shape& shape) const {
        std::vector<element_t<Z>> grad_z(static_cast<std::size_t>(shape.numel()));
        backward(z, grad_out, grad_z, shape);
        return grad_z;
    }

    /// Entropy of each row of a head output: out [..., D] -> entropy [...], same type.
    /// Gaussian: sum(out) + 0.5*D*ln(2*pi*e); softmax: H(softmax(out)).
    template <typename T> void entropy(ConstView<T> out, View<T> entropy, void* stream = nullptr) const {
        const DLTensor tout = out.dlpack();
        DLTensor th = entropy.dlpack();
        check(era_head_entropy(this->handle_, &tout, &th, stream));
    }
    /// entropy on DLTensors.
    void entropy(const DLTensor& out, DLTensor& entropy, void* stream = nullptr) const {
        check(era_head_entropy(this->handle_, &out, &entropy, stream));
    }
    /// entropy on contiguous ranges: `out` holds `shape`, `entropy` one value per row.
    template <typename O, typename H, enable_if_input_t<O> = 0, enable_if_output_t<H> = 0>
    void entropy(const O& out, H& entropy, const Shape& shape) const {
        static_assert(std::is_same<element_t<O>, element_t<H>>::value, "era: out and entropy differ in element type");
        const Shape rows = shape.rows();
        this->entropy(arg(out, shape, "out"), arg(entropy, rows, "entropy"));
    }
    /// entropy into a new vector (one value per row).
    template <typename O, enable_if_input_t<O> = 0>
    [[nodiscard]] std::vector<element_t<O>> entropy(const O& out, const Shape& shape) const {
        std::vector<element_t<O>> h(static_cast<std::size_t>(shape.rows().numel()));
        entropy(out, h, shape);
        return h;
    }

protected:
    using Base::Base;
};
}  // namespace detail

/// A Gaussian ERA head (docs/math.md#gaussian-head): maps pre-activations z [..., D] to
/// log-stds whose Gaussian has entropy >= H0 + delta, and learns delta. Move-only; the
/// const operations may run concurrently; the delta calls are synchronised by the library.
class GaussianHead : public detail::RowHead<GaussianHead, GaussianConfig, ERA_HEAD_KIND_GAUSSIAN> {
public:
    /// Builds the head (era_head_new); throws era::Error for an invalid or infeasible config.
    explicit GaussianHead(const GaussianConfig& config) : RowHead(config) {}
    /// Loads a head saved by to_json; throws era::Error if the JSON holds another kind.
    [[nodiscard]] static GaussianHead from_json(const std::string& json) { return GaussianHead(load(json), true); }
    /// Takes ownership of a C handle; throws era::Error (and leaves it to the caller) if it is
    /// of another kind.
    [[nodiscard]] static GaussianHead adopt(EraHead* handle) { return GaussianHead(handle, false); }

    /// The current compensation delta.
    [[nodiscard]] double delta() const {
        double value = 0.0;
        check(era_head_delta(handle_, &value));
        return value;
    }
    /// Sets delta (clamped by the library so that the target stays feasible).
    void set_delta(double value) { check(era_head_set_delta(handle_, value)); }
    /// One step of the delta learner from the batch-mean entropy of the *bounded* policy
    /// (tanh-squashed or truncated); returns the new delta.
    double update_delta(double mean_entropy) {
        double value = 0.0;
        check(era_head_update_delta(handle_, mean_entropy, &value));
        return value;
    }

    /// forward with delta as an input (0-d or [1]: one for all rows; z's shape without the
    /// last axis: one per row), of z's type; the stored delta is not used.
    template <typename T>
    void forward_delta(ConstView<T> z, ConstView<T> delta, View<T> out, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), td = delta.dlpack();
        DLTensor tout = out.dlpack();
        check(era_gaussian_forward_delta(handle_, &tz, &td, &tout, stream));
    }
    /// forward_delta on DLTensors.
    void forward_delta(const DLTensor& z, const DLTensor& delta, DLTensor& out, void* stream = nullptr) const {
        check(era_gaussian_forward_delta(handle_, &z, &delta, &out, stream));
    }
    /// forward_delta on contiguous ranges holding `shape`, with one delta for every row.
    template <typename Z, typename Out, detail::enable_if_input_t<Z> = 0, detail::enable_if_output_t<Out> = 0>
    void forward_delta(const Z& z, double delta, Out& out, const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<Out>>::value, "era: z and out differ in element type");
        const T d = static_cast<T>(delta);
        forward_delta(detail::arg(z, shape, "z"), ConstView<T>(&d, Shape()), detail::arg(out, shape, "out"));
    }

    /// VJP of forward_delta: grad_z of z's shape and, if bound, grad_delta of delta's shape
    /// (for one delta, the sum over all rows).
    template <typename T>
    void backward_delta(ConstView<T> z, ConstView<T> delta, ConstView<T> grad_out, View<T> grad_z,
                        View<T> grad_delta = View<T>(), void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), td = delta.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack(), tgd = grad_delta.dlpack();
        check(era_gaussian_backward_delta(handle_, &tz, &td, &tg, &tgz, grad_delta ? &tgd : nullptr, stream));
    }
    /// backward_delta on DLTensors; grad_delta may be null.
    void backward_delta(const DLTensor& z, const DLTensor& delta, const DLTensor& grad_out, DLTensor& grad_z,
                        DLTensor* grad_delta = nullptr, void* stream = nullptr) const {
        check(era_gaussian_backward_delta(handle_, &z, &delta, &grad_out, &grad_z, grad_delta, stream));
    }
    /// backward_delta on contiguous ranges holding `shape`, with one delta for every row;
    /// returns d loss / d delta.
    template <typename Z, typename G, typename GZ, detail::enable_if_input_t<Z> = 0, detail::enable_if_input_t<G> = 0,
              detail::enable_if_output_t<GZ> = 0>
    detail::element_t<Z> backward_delta(const Z& z, double delta, const G& grad_out, GZ& grad_z,
                                        const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<G>>::value && std::is_same<T, detail::element_t<GZ>>::value,
                      "era: z, grad_out and grad_z differ in element type");
        const T d = static_cast<T>(delta);
        T grad_delta{};
        backward_delta(detail::arg(z, shape, "z"), ConstView<T>(&d, Shape()), detail::arg(grad_out, shape, "grad_out"),
                       detail::arg(grad_z, shape, "grad_z"), View<T>(&grad_delta, Shape()));
        return grad_delta;
    }

    /// forward under a per-row active-dimension mask (docs/math.md#gaussian-mask): `mask` of z's
    /// shape and type holds 0 (inactive) or 1 (active); a row with a active coordinates gets the
    /// head of target (a/D)*(H0 + delta) on them, and `*fill` (nullptr: z itself) elsewhere.
    /// `delta` as in forward_delta, or an unbound view for the stored delta.
    template <typename T>
    void forward_masked(ConstView<T> z, ConstView<T> mask, ConstView<T> delta, View<T> out,
                        const double* fill = nullptr, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), tm = mask.dlpack(), td = delta.dlpack();
        DLTensor tout = out.dlpack();
        check(era_gaussian_forward_masked(handle_, &tz, &tm, delta ? &td : nullptr, fill, &tout, stream));
    }

    /// VJP of forward_masked: grad_z of z's shape (grad_out passed through at inactive
    /// coordinates when `fill` is nullptr, else 0 there) and, if bound, grad_delta of delta's
    /// shape (which then must be bound).
    template <typename T>
    void backward_masked(ConstView<T> z, ConstView<T> mask, ConstView<T> delta, ConstView<T> grad_out,
                         View<T> grad_z, View<T> grad_delta = View<T>(), const double* fill = nullptr,
                         void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), tm = mask.dlpack(), td = delta.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack(), tgd = grad_delta.dlpack();
        check(era_gaussian_backward_masked(handle_, &tz, &tm, delta ? &td : nullptr, fill, &tg, &tgz,
                                           grad_delta ? &tgd : nullptr, stream));
    }

    /// forward that also writes the residual of the backward (docs/math.md#saved-softmax):
    /// `out` as forward_delta computes it (the same bits) and `saved` = softmax(z) row-wise,
    /// both of z's shape and type; out and saved must not overlap (either may alias z).
    /// `delta` as in forward_delta, or an unbound view for the stored delta. Hand `saved` to
    /// backward_saved in place of z: the pair computes each exponential once. Host memory
    /// only (CUDA buffers throw era::Error with ERA_STATUS_UNSUPPORTED_DEVICE).
    template <typename T>
    void forward_saved(ConstView<T> z, ConstView<T> delta, View<T> out, View<T> saved,
                       void* stream = nullptr) const {
        const DLTensor tz = z.dlpack(), td = delta.dlpack();
        DLTensor tout = out.dlpack(), ts = saved.dlpack();
        check(era_gaussian_forward_saved(handle_, &tz, delta ? &td : nullptr, &tout, &ts, stream));
    }
    /// forward_saved on DLTensors; delta may be null (the stored delta).
    void forward_saved(const DLTensor& z, const DLTensor* delta, DLTensor& out, DLTensor& saved,
                       void* stream = nullptr) const {
        check(era_gaussian_forward_saved(handle_, &z, delta, &out, &saved, stream));
    }
    /// forward_saved on contiguous ranges holding `shape`, with the stored delta.
    template <typename Z, typename Out, typename S, detail::enable_if_input_t<Z> = 0,
              detail::enable_if_output_t<Out> = 0, detail::enable_if_output_t<S> = 0>
    void forward_saved(const Z& z, Out& out, S& saved, const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<Out>>::value && std::is_same<T, detail::element_t<S>>::value,
                      "era: z, out and saved differ in element type");
        forward_saved(detail::arg(z, shape, "z"), ConstView<T>(), detail::arg(out, shape, "out"),
                      detail::arg(saved, shape, "saved"));
    }
    /// forward_saved on contiguous ranges holding `shape`, with one delta for every row.
    template <typename Z, typename Out, typename S, detail::enable_if_input_t<Z> = 0,
              detail::enable_if_output_t<Out> = 0, detail::enable_if_output_t<S> = 0>
    void forward_saved(const Z& z, double delta, Out& out, S& saved, const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<Out>>::value && std::is_same<T, detail::element_t<S>>::value,
                      "era: z, out and saved differ in element type");
        const T d = static_cast<T>(delta);
        forward_saved(detail::arg(z, shape, "z"), ConstView<T>(&d, Shape()), detail::arg(out, shape, "out"),
                      detail::arg(saved, shape, "saved"));
    }

    /// VJP from the `saved` that forward_saved wrote, instead of z: the same grad_z and
    /// grad_delta as backward_delta (the same bits), with no exponential. `delta`: the one
    /// given to forward_saved (an unbound view for the stored delta); grad_delta, if bound, of
    /// delta's shape (which then must be bound). grad_z may alias saved or grad_out. A `saved`
    /// that is not a row-wise softmax gives a result without meaning. Host memory only.
    template <typename T>
    void backward_saved(ConstView<T> saved, ConstView<T> delta, ConstView<T> grad_out, View<T> grad_z,
                        View<T> grad_delta = View<T>(), void* stream = nullptr) const {
        const DLTensor ts = saved.dlpack(), td = delta.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack(), tgd = grad_delta.dlpack();
        check(era_gaussian_backward_saved(handle_, &ts, delta ? &td : nullptr, &tg, &tgz,
                                          grad_delta ? &tgd : nullptr, stream));
    }
    /// backward_saved on DLTensors; delta and grad_delta may be null (grad_delta needs delta).
    void backward_saved(const DLTensor& saved, const DLTensor* delta, const DLTensor& grad_out, DLTensor& grad_z,
                        DLTensor* grad_delta = nullptr, void* stream = nullptr) const {
        check(era_gaussian_backward_saved(handle_, &saved, delta, &grad_out, &grad_z, grad_delta, stream));
    }
    /// backward_saved on contiguous ranges holding `shape`, with the stored delta.
    template <typename S, typename G, typename GZ, detail::enable_if_input_t<S> = 0, detail::enable_if_input_t<G> = 0,
              detail::enable_if_output_t<GZ> = 0>
    void backward_saved(const S& saved, const G& grad_out, GZ& grad_z, const Shape& shape) const {
        using T = detail::element_t<S>;
        static_assert(std::is_same<T, detail::element_t<G>>::value && std::is_same<T, detail::element_t<GZ>>::value,
                      "era: saved, grad_out and grad_z differ in element type");
        backward_saved(detail::arg(saved, shape, "saved"), ConstView<T>(), detail::arg(grad_out, shape, "grad_out"),
                       detail::arg(grad_z, shape, "grad_z"));
    }
    /// backward_saved on contiguous ranges holding `shape`, with one delta for every row;
    /// returns d loss / d delta.
    template <typename S, typename G, typename GZ, detail::enable_if_input_t<S> = 0, detail::enable_if_input_t<G> = 0,
              detail::enable_if_output_t<GZ> = 0>
    detail::element_t<S> backward_saved(const S& saved, double delta, const G& grad_out, GZ& grad_z,
                                        const Shape& shape) const {
        using T = detail::element_t<S>;
        static_assert(std::is_same<T, detail::element_t<G>>::value && std::is_same<T, detail::element_t<GZ>>::value,
                      "era: saved, grad_out and grad_z differ in element type");
        const T d = static_cast<T>(delta);
        T grad_delta{};
        backward_saved(detail::arg(saved, shape, "saved"), ConstView<T>(&d, Shape()),
                       detail::arg(grad_out, shape, "grad_out"), detail::arg(grad_z, shape, "grad_z"),
                       View<T>(&grad_delta, Shape()));
        return grad_delta;
    }

private:
    GaussianHead(EraHead* handle, bool free_on_error) : RowHead(handle, free_on_error) {}
};

/// A softmax ERA head (docs/math.md#softmax-head): maps logits z [..., n] to logits
/// whose softmax has entropy >= H0. Move-only; the operations may run concurrently.
class SoftmaxHead : public detail::RowHead<SoftmaxHead, SoftmaxConfig, ERA_HEAD_KIND_SOFTMAX> {
public:
    /// Builds the head (era_head_new); throws era::Error for an invalid or infeasible config.
    explicit SoftmaxHead(const SoftmaxConfig& config) : RowHead(config) {}
    /// Loads a head saved by to_json; throws era::Error if the JSON holds another kind.
    [[nodiscard]] static SoftmaxHead from_json(const std::string& json) { return SoftmaxHead(load(json), true); }
    /// Takes ownership of a C handle; throws era::Error (and leaves it to the caller) if it is
    /// of another kind.
    [[nodiscard]] static SoftmaxHead adopt(EraHead* handle) { return SoftmaxHead(handle, false); }

    /// forward that also writes the residual of the backward (docs/math.md#saved-softmax):
    /// `out` as forward computes it (the same bits) and `saved` = softmax(z) row-wise, both of
    /// z's shape and type; out and saved must not overlap (either may alias z). Hand `saved` to
    /// backward_saved in place of z. Host memory only (CUDA buffers throw era::Error with
    /// ERA_STATUS_UNSUPPORTED_DEVICE).
    template <typename T>
    void forward_saved(ConstView<T> z, View<T> out, View<T> saved, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack();
        DLTensor tout = out.dlpack(), ts = saved.dlpack();
        check(era_softmax_forward_saved(handle_, &tz, &tout, &ts, stream));
    }
    /// forward_saved on DLTensors.
    void forward_saved(const DLTensor& z, DLTensor& out, DLTensor& saved, void* stream = nullptr) const {
        check(era_softmax_forward_saved(handle_, &z, &out, &saved, stream));
    }
    /// forward_saved on contiguous ranges holding `shape` (checked).
    template <typename Z, typename Out, typename S, detail::enable_if_input_t<Z> = 0,
              detail::enable_if_output_t<Out> = 0, detail::enable_if_output_t<S> = 0>
    void forward_saved(const Z& z, Out& out, S& saved, const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<Out>>::value && std::is_same<T, detail::element_t<S>>::value,
                      "era: z, out and saved differ in element type");
        forward_saved(detail::arg(z, shape, "z"), detail::arg(out, shape, "out"), detail::arg(saved, shape, "saved"));
    }

    /// VJP from the `saved` that forward_saved wrote, instead of z: no exponential; the same
    /// bits as backward on the vectorised float kernels, equal to rounding elsewhere. grad_z
    /// may alias either input. A `saved` that is not a row-wise softmax gives a result without
    /// meaning. Host memory only.
    template <typename T>
    void backward_saved(ConstView<T> saved, ConstView<T> grad_out, View<T> grad_z, void* stream = nullptr) const {
        const DLTensor ts = saved.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack();
        check(era_softmax_backward_saved(handle_, &ts, &tg, &tgz, stream));
    }
    /// backward_saved on DLTensors.
    void backward_saved(const DLTensor& saved, const DLTensor& grad_out, DLTensor& grad_z,
                        void* stream = nullptr) const {
        check(era_softmax_backward_saved(handle_, &saved, &grad_out, &grad_z, stream));
    }
    /// backward_saved on contiguous ranges holding `shape` (checked).
    template <typename S, typename G, typename GZ, detail::enable_if_input_t<S> = 0, detail::enable_if_input_t<G> = 0,
              detail::enable_if_output_t<GZ> = 0>
    void backward_saved(const S& saved, const G& grad_out, GZ& grad_z, const Shape& shape) const {
        using T = detail::element_t<S>;
        static_assert(std::is_same<T, detail::element_t<G>>::value && std::is_same<T, detail::element_t<GZ>>::value,
                      "era: saved, grad_out and grad_z differ in element type");
        backward_saved(detail::arg(saved, shape, "saved"), detail::arg(grad_out, shape, "grad_out"),
                       detail::arg(grad_z, shape, "grad_z"));
    }
    /// backward_saved into a new vector.
    template <typename S, typename G, detail::enable_if_input_t<S> = 0, detail::enable_if_input_t<G> = 0>
    [[nodiscard]] std::vector<detail::element_t<S>> backward_saved(const S& saved, const G& grad_out,
                                                                   const Shape& shape) const {
        std::vector<detail::element_t<S>> grad_z(static_cast<std::size_t>(shape.numel()));
        backward_saved(saved, grad_out, grad_z, shape);
        return grad_z;
    }

    /// forward_saved that also writes the second residual `dwdh` = dw/dh per element
    /// (docs/math.md#saved-softmax), of z's shape and type: with both, backward_saved_dw
    /// computes no exponential, logarithm, square root or division on the vectorised float
    /// kernels. `out` and `saved` are forward_saved's bits; the three outputs must not
    /// overlap (any may alias z). Host memory only.
    template <typename T>
    void forward_saved_dw(ConstView<T> z, View<T> out, View<T> saved, View<T> dwdh, void* stream = nullptr) const {
        const DLTensor tz = z.dlpack();
        DLTensor tout = out.dlpack(), ts = saved.dlpack(), tq = dwdh.dlpack();
        check(era_softmax_forward_saved_dw(handle_, &tz, &tout, &ts, &tq, stream));
    }
    /// forward_saved_dw on DLTensors.
    void forward_saved_dw(const DLTensor& z, DLTensor& out, DLTensor& saved, DLTensor& dwdh,
                          void* stream = nullptr) const {
        check(era_softmax_forward_saved_dw(handle_, &z, &out, &saved, &dwdh, stream));
    }
    /// forward_saved_dw on contiguous ranges holding `shape` (checked).
    template <typename Z, typename Out, typename S, typename Q, detail::enable_if_input_t<Z> = 0,
              detail::enable_if_output_t<Out> = 0, detail::enable_if_output_t<S> = 0,
              detail::enable_if_output_t<Q> = 0>
    void forward_saved_dw(const Z& z, Out& out, S& saved, Q& dwdh, const Shape& shape) const {
        using T = detail::element_t<Z>;
        static_assert(std::is_same<T, detail::element_t<Out>>::value && std::is_same<T, detail::element_t<S>>::value &&
                          std::is_same<T, detail::element_t<Q>>::value,
                      "era: z, out, saved and dwdh differ in element type");
        forward_saved_dw(detail::arg(z, shape, "z"), detail::arg(out, shape, "out"), detail::arg(saved, shape, "saved"),
                         detail::arg(dwdh, shape, "dwdh"));
    }

    /// VJP from both residuals that forward_saved_dw wrote: the same bits as backward on the
    /// vectorised float kernels; elsewhere backward_saved's result (dwdh unread). grad_z may
    /// alias any input. Host memory only.
    template <typename T>
    void backward_saved_dw(ConstView<T> saved, ConstView<T> dwdh, ConstView<T> grad_out, View<T> grad_z,
                           void* stream = nullptr) const {
        const DLTensor ts = saved.dlpack(), tq = dwdh.dlpack(), tg = grad_out.dlpack();
        DLTensor tgz = grad_z.dlpack();
        check(era_softmax_backward_saved_dw(handle_, &ts, &tq, &tg, &tgz, stream));
    }
    /// backward_saved_dw on DLTensors.
    void backward_saved_dw(const DLTensor& saved, const DLTensor& dwdh, const DLTensor& grad_out, DLTensor& grad_z,
                           void* stream = nullptr) const {
        check(era_softmax_backward_saved_dw(handle_, &saved, &dwdh, &grad_out, &grad_z, stream));
    }
    /// backward_saved_dw on contiguous ranges holding `shape` (checked).
    template <typename S, typename Q, typename G, typename GZ, detail::enable_if_input_t<S> = 0,
              detail::enable_if_input_t<Q> = 0, detail::enable_if_input_t<G> = 0, detail::enable_if_output_t<GZ> = 0>
    void backward_saved_dw(const S& saved, const Q& dwdh, const G& grad_out, GZ& grad_z, const Shape& shape) const {
        using T = detail::element_t<S>;
        static_assert(std::is_same<T, detail::element_t<Q>>::value && std::is_same<T, detail::element_t<G>>::value &&
                          std::is_same<T, detail::element_t<GZ>>::value,
                      "era: saved, dwdh, grad_out and grad_z differ in element type");
        backward_saved_dw(detail::arg(saved, shape, "saved"), detail::arg(dwdh, shape, "dwdh"),
                          detail::arg(grad_out, shape, "grad_out"), detail::arg(grad_z, shape, "grad_z"));
    }

private:
    SoftmaxHead(EraHead* handle, bool free_on_error) : RowHead(handle, free_on_error) {}
};

}  // namespace era

#endif  // ERA_HPP_HEAD_HPP
