/*
 * era.hpp: header-only C++17 wrapper of the era C API (era.h).
 *
 *   #include <era.hpp>
 *
 *   era::GaussianHead head(era::GaussianConfig{6, -6.0}.log_std_bounds(-5, 2));
 *   std::vector<float> z(4 * 6), log_std(z.size());
 *   head.forward(z, log_std, {z.size() / 6, 6});       // sizes checked against the shape
 *
 * What is here:
 *   - era::Error (status + message) for every failing call; era::abi_compatible();
 *   - typed configurations (GaussianConfig, SoftmaxConfig, TokenConfig), each exposing only
 *     the fields of its kind, built on era_config_default;
 *   - move-only heads (GaussianHead, SoftmaxHead, TokenHead) owning an EraHead*;
 *   - era::Shape / era::Strides (braced lists of any integer type, checked) and strided,
 *     const-correct views era::ConstView<T> (inputs) and era::View<T> (outputs) that
 *     become DLPack DLTensors;
 *   - overloads for contiguous containers (anything with std::data / std::size) whose
 *     sizes are checked against the shape, and allocating conveniences that return vectors;
 *   - era::bf16 / era::f16 storage types for half-precision logits;
 *   - the head-free entropies (gaussian_entropy, softmax_entropy, truncated_normal_entropy).
 *
 * No math lives here: every operation is one call into the C library. Views and
 * DLTensors borrow memory: the buffers must outlive the call.
 */
#ifndef ERA_HPP
#define ERA_HPP

#include "era.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace era {

static_assert(sizeof(EraConfig) == ERA_CONFIG_SIZE, "era.hpp: EraConfig does not have the size era.h states");

/* ================================================================== errors */

/// Copies the message of the last failure on this thread (era_last_error); "" when none.
[[nodiscard]] inline std::string last_error() {
    std::size_t len = era_last_error(nullptr, 0);
    if (len == 0) {
        return std::string();
    }
    std::string buf(len + 1, '\0');
    len = era_last_error(&buf[0], buf.size());
    buf.resize(len < buf.size() ? len : buf.size() - 1);
    return buf;
}

/// The exception thrown for every failure, whether the C library or the wrapper found it.
/// what() is "ERA_STATUS_NAME: message".
class Error : public std::runtime_error {
public:
    /// An error with a status code (ERA_STATUS_*) and a message.
    Error(EraStatus status, const std::string& message)
        : std::runtime_error(std::string(era_status_str(status)) + ": " + message),
          status_(status), message_(message) {}

    /// The status code (ERA_STATUS_*).
    [[nodiscard]] EraStatus status() const noexcept { return status_; }
    /// The message, without the status name.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    /// The static name of the status code, e.g. "ERA_STATUS_INVALID_SHAPE".
    [[nodiscard]] const char* status_name() const noexcept { return era_status_str(status_); }

private:
    EraStatus status_;
    std::string message_;
};

/// Throws era::Error with the thread's last-error message unless status is ERA_STATUS_OK.
inline void check(EraStatus status) {
    if (status != ERA_STATUS_OK) {
        throw Error(status, last_error());
    }
}

/* ================================================================== versions and ABI */

/// The library's version string, e.g. "0.1.0".
[[nodiscard]] inline std::string version() { return std::string(era_version()); }

/// The library's ABI version (era_abi_version()).
[[nodiscard]] inline std::uint32_t abi_version() noexcept { return era_abi_version(); }

/// Why the loaded library does not match this header ("" when it does): the ABI version,
/// sizeof(EraConfig) against era_config_size(), and the offset and size of every field
/// against era_config_field().
[[nodiscard]] inline std::string abi_mismatch() {
    if (era_abi_version() != ERA_ABI_VERSION) {
        return "the library has ABI version " + std::to_string(era_abi_version()) + ", era.h " +
               std::to_string(ERA_ABI_VERSION);
    }
    if (era_config_size() != sizeof(EraConfig)) {
        return "the library's EraConfig has " + std::to_string(era_config_size()) + " bytes, era.h's " +
               std::to_string(sizeof(EraConfig));
    }
    struct Field {
        const char* name;
        std::size_t offset, size;
    };
#define ERA_HPP_FIELD(f) Field{#f, offsetof(EraConfig, f), sizeof(EraConfig::f)}
    const Field fields[] = {
        ERA_HPP_FIELD(struct_size),  ERA_HPP_FIELD(kind),        ERA_HPP_FIELD(target_entropy),
        ERA_HPP_FIELD(dim),          ERA_HPP_FIELD(log_std_min), ERA_HPP_FIELD(log_std_max),
        ERA_HPP_FIELD(delta),        ERA_HPP_FIELD(delta_optimizer), ERA_HPP_FIELD(reserved0),
        ERA_HPP_FIELD(delta_lr),     ERA_HPP_FIELD(delta_beta1), ERA_HPP_FIELD(delta_beta2),
        ERA_HPP_FIELD(delta_eps),    ERA_HPP_FIELD(num_classes), ERA_HPP_FIELD(tau),
        ERA_HPP_FIELD(k),            ERA_HPP_FIELD(omega_low),   ERA_HPP_FIELD(omega_high),
        ERA_HPP_FIELD(top_fraction), ERA_HPP_FIELD(temperature), ERA_HPP_FIELD(advantage_scaling),
        ERA_HPP_FIELD(reserved1),    ERA_HPP_FIELD(vocab_topk),  ERA_HPP_FIELD(num_threads),
        ERA_HPP_FIELD(reserved2),
    };
#undef ERA_HPP_FIELD
    for (const Field& field : fields) {
        std::size_t offset = 0, size = 0;
        if (era_config_field(field.name, &offset, &size) != ERA_STATUS_OK) {
            return std::string("the library's EraConfig has no field ") + field.name;
        }
        if (offset != field.offset || size != field.size) {
            return std::string("EraConfig::") + field.name + " is at offset " + std::to_string(offset) +
                   " (" + std::to_string(size) + " bytes) in the library, " + std::to_string(field.offset) +
                   " (" + std::to_string(field.size) + " bytes) in era.h";
        }
    }
    return std::string();
}

/// True when the loaded library has this header's ABI version and EraConfig layout.
[[nodiscard]] inline bool abi_compatible() { return abi_mismatch().empty(); }

/// Throws era::Error (ERA_STATUS_INVALID_CONFIG) unless abi_compatible().
inline void check_abi() {
    std::string why = abi_mismatch();
    if (!why.empty()) {
        throw Error(ERA_STATUS_INVALID_CONFIG, "era.hpp: ABI mismatch: " + why);
    }
}

/* ================================================================== element types */

/// bfloat16 storage (the upper half of an IEEE float32): for logits only; no arithmetic.
struct bf16 {
    std::uint16_t bits = 0;  ///< the raw bits

    bf16() = default;
    /// Rounds a float to the nearest bfloat16 (ties to even; NaN stays NaN).
    explicit bf16(float value) noexcept {
        std::uint32_t u;
        std::memcpy(&u, &value, sizeof u);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            bits = static_cast<std::uint16_t>((u >> 16) | 0x40u);
        } else {
            u += 0x7fffu + ((u >> 16) & 1u);
            bits = static_cast<std::uint16_t>(u >> 16);
        }
    }
    /// The exact float value.
    explicit operator float() const noexcept {
        std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
        float value;
        std::memcpy(&value, &u, sizeof value);
        return value;
    }
    /// A bfloat16 from its raw bits.
    static bf16 from_bits(std::uint16_t raw) noexcept {
        bf16 b;
        b.bits = raw;
        return b;
    }
};

/// IEEE binary16 storage: for logits only; no arithmetic.
struct f16 {
    std::uint16_t bits = 0;  ///< the raw bits

    f16() = default;
    /// Rounds a float to the nearest binary16 (ties to even; overflow to infinity; NaN stays NaN).
    explicit f16(float value) noexcept {
        std::uint32_t u;
        std::memcpy(&u, &value, sizeof u);
        const std::uint32_t sign = u & 0x80000000u;
        u ^= sign;
        std::uint32_t out;
        if (u >= 0x47800000u) {  // >= 65536 (or inf, NaN)
            out = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
        } else if (u < 0x38800000u) {  // below the smallest normal half: let the FPU round
            float f, magic;
            const std::uint32_t magic_bits = 0x3f000000u;  // 0.5: shifts the half subnormal bits down
            std::memcpy(&f, &u, sizeof f);
            std::memcpy(&magic, &magic_bits, sizeof magic);
            f += magic;
            std::memcpy(&out, &f, sizeof out);
            out -= magic_bits;
        } else {
            const std::uint32_t odd = (u >> 13) & 1u;
            u += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round to nearest even
            out = u >> 13;
        }
        bits = static_cast<std::uint16_t>(out | (sign >> 16));
    }
    /// The exact float value.
    explicit operator float() const noexcept {
        const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
        std::uint32_t exponent = (bits >> 10) & 0x1fu, mantissa = bits & 0x3ffu, u;
        if (exponent == 0x1fu) {
            u = sign | 0x7f800000u | (mantissa << 13);
        } else if (exponent != 0) {
            u = sign | ((exponent + 112u) << 23) | (mantissa << 13);
        } else if (mantissa == 0) {
            u = sign;
        } else {  // subnormal: normalise
            exponent = 113;
            while ((mantissa & 0x400u) == 0) {
                mantissa <<= 1;
                exponent--;
            }
            u = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
        }
        float value;
        std::memcpy(&value, &u, sizeof value);
        return value;
    }
    /// A binary16 from its raw bits.
    static f16 from_bits(std::uint16_t raw) noexcept {
        f16 h;
        h.bits = raw;
        return h;
    }
};

/// The DLPack dtype of an element type: `dtype_of<T>::value`. Defined for float, double,
/// era::bf16, era::f16 and the integer types; specialise it for another 2-byte type
/// (e.g. `__half`: `static constexpr DLDataType value = {kDLFloat, 16, 1};`).
template <typename T, typename = void> struct dtype_of {};
template <> struct dtype_of<float> { static constexpr DLDataType value = {kDLFloat, 32, 1}; };
template <> struct dtype_of<double> { static constexpr DLDataType value = {kDLFloat, 64, 1}; };
template <> struct dtype_of<bf16> { static constexpr DLDataType value = {kDLBfloat, 16, 1}; };
template <> struct dtype_of<f16> { static constexpr DLDataType value = {kDLFloat, 16, 1}; };
template <typename T>
struct dtype_of<T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value>> {
    static constexpr DLDataType value = {static_cast<std::uint8_t>(std::is_signed<T>::value ? kDLInt : kDLUInt),
                                         static_cast<std::uint8_t>(8 * sizeof(T)), 1};
};

namespace detail {
template <typename T, typename = void> struct has_dtype : std::false_type {};
template <typename T> struct has_dtype<T, decltype(void(dtype_of<T>::value))> : std::true_type {};

template <typename T> constexpr bool is_index_v = std::is_integral<T>::value && !std::is_same<T, bool>::value;
template <typename T>
constexpr bool is_token_index_v = std::is_integral<T>::value && std::is_signed<T>::value &&
                                  (sizeof(T) == 4 || sizeof(T) == 8);
template <typename T> constexpr bool is_real_v = std::is_same<T, float>::value || std::is_same<T, double>::value;

inline Error shape_error(const std::string& message) { return Error(ERA_STATUS_INVALID_SHAPE, "era.hpp: " + message); }

/// An integer as an int64 extent (or stride), checked.
template <typename I> std::int64_t to_int64(I value, bool allow_negative) {
    static_assert(is_index_v<I>, "era: extents and strides are integers");
    if constexpr (std::is_signed<I>::value) {
        if (!allow_negative && value < 0) {
            throw shape_error("negative extent " + std::to_string(value));
        }
    } else if constexpr (sizeof(I) >= sizeof(std::int64_t)) {
        if (value > static_cast<I>(std::numeric_limits<std::int64_t>::max())) {
            throw shape_error("extent " + std::to_string(value) + " does not fit int64");
        }
    }
    return static_cast<std::int64_t>(value);
}
}  // namespace detail

/* ================================================================== shapes */

/// The largest rank the wrapper's views hold (their extents live inline, without allocation).
constexpr int max_rank = 8;

namespace detail {
/// Up to max_rank int64 values held inline: the common part of Shape and Strides.
template <bool AllowNegative> class Dims {
public:
    /// Rank 0 (a scalar shape; for strides: row-major).
    Dims() noexcept = default;

    /// From integers of any types, checked: `{rows, 6}`, `{z.size() / 6, 6}`.
    template <typename... I, typename = std::enable_if_t<(sizeof...(I) > 0) && (is_index_v<I> && ...)>>
    Dims(I... values) {  // NOLINT: implicit, so that a braced list converts
        static_assert(sizeof...(I) <= max_rank, "era: rank above era::max_rank");
        const std::int64_t checked[] = {to_int64(values, AllowNegative)...};
        for (std::int64_t v : checked) {
            values_[rank_++] = v;
        }
    }

    /// From a range of integers (e.g. a std::vector<int64_t> or a DLTensor's shape), checked.
    template <typename Range, typename = std::enable_if_t<is_index_v<std::decay_t<decltype(*std::begin(
                                  std::declval<const Range&>()))>>>>
    explicit Dims(const Range& range) {
        for (const auto& v : range) {
            push(v);
        }
    }

    /// From `count` integers at `values`, checked.
    template <typename I> Dims(const I* values, int count) {
        for (int i = 0; i < count; i++) {
            push(values[i]);
        }
    }

    /// The number of values (the rank).
    [[nodiscard]] int rank() const noexcept { return rank_; }
    /// The values.
    [[nodiscard]] const std::int64_t* data() const noexcept { return values_; }
    /// Value i (unchecked).
    [[nodiscard]] std::int64_t operator[](int i) const noexcept { return values_[i]; }
    /// Iteration over the values.
    [[nodiscard]] const std::int64_t* begin() const noexcept { return values_; }
    [[nodiscard]] const std::int64_t* end() const noexcept { return values_ + rank_; }

    /// "[4, 6]".
    [[nodiscard]] std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank_; i++) {
            s += (i ? ", " : "") + std::to_string(values_[i]);
        }
        return s + "]";
    }

    friend bool operator==(const Dims& a, const Dims& b) noexcept {
        if (a.rank_ != b.rank_) {
            return false;
        }
        for (int i = 0; i < a.rank_; i++) {
            if (a.values_[i] != b.values_[i]) {
                return false;
            }
        }
        return true;
    }
    friend bool operator!=(const Dims& a, const Dims& b) noexcept { return !(a == b); }

protected:
    template <typename I> void push(I v) {
        if (rank_ == max_rank) {
            throw shape_error("rank above era::max_rank (" + std::to_string(max_rank) + ")");
        }
        values_[rank_++] = to_int64(v, AllowNegative);
    }

    std::int64_t values_[max_rank] = {};
    int rank_ = 0;
};
}  // namespace detail

/// The extents of a tensor, at most era::max_rank of them, each >= 0. Converts from a
/// braced list of integers of any types (checked, so `{z.size() / 6, 6}` works).
class Shape : public detail::Dims<false> {
public:
    using Dims::Dims;

    /// The number of elements (throws era::Error on int64 overflow).
    [[nodiscard]] std::int64_t numel() const {
        std::int64_t n = 1;
        for (std::int64_t v : *this) {
            if (v == 0) {
                return 0;
            }
        }
        for (std::int64_t v : *this) {
            if (n > std::numeric_limits<std::int64_t>::max() / v) {
                throw detail::shape_error("shape " + str() + " has more than 2^63 elements");
            }
            n *= v;
        }
        return n;
    }

    /// The shape without its last axis (the rows of a head's input); throws for rank 0.
    [[nodiscard]] Shape rows() const {
        if (rank() == 0) {
            throw detail::shape_error("a head's input needs rank >= 1, got a scalar shape");
        }
        return Shape(data(), rank() - 1);
    }
};

/// Strides in elements (DLPack convention), one per axis; empty = row-major.
class Strides : public detail::Dims<true> {
public:
    using Dims::Dims;
};

/* ================================================================== views */

/// A read-only, possibly strided view of memory holding T: what the wrapper passes as
/// an input. Holds its shape and strides inline; dlpack() describes it as a DLTensor.
/// A default-constructed view is unbound (an optional output that is not wanted).
template <typename T> class ConstView {
    static_assert(!std::is_const<T>::value && !std::is_volatile<T>::value,
                  "era: write ConstView<T> with an unqualified T");
    static_assert(detail::has_dtype<T>::value, "era: no DLPack dtype for this element type (see era::dtype_of)");

public:
    using value_type = T;

    /// An unbound view.
    ConstView() noexcept = default;

    /// A view of `data` with `shape`; `strides` in elements (empty: row-major); the first
    /// element at `data + byte_offset` bytes; `device` CPU unless told (for CUDA memory,
    /// pass {kDLCUDA, id} and a stream to the call).
    ConstView(const T* data, Shape shape, Strides strides = {}, std::int64_t byte_offset = 0,
              DLDevice device = DLDevice{kDLCPU, 0})
        : data_(const_cast<T*>(data)), shape_(shape), strides_(strides), byte_offset_(byte_offset),
          device_(device), bound_(true) {
        if (strides_.rank() != 0 && strides_.rank() != shape_.rank()) {
            throw Error(ERA_STATUS_INVALID_LAYOUT, "era.hpp: strides " + strides_.str() + " for shape " +
                                                       shape_.str() + ": one stride per axis");
        }
    }

    /// A view of a DLTensor someone else made (e.g. from PyTorch through DLPack); its dtype
    /// must be T's. The view copies the shape and strides; the data stay borrowed.
    static ConstView from_dlpack(const DLTensor& tensor) { return ConstView(tensor, nullptr); }

    /// The base pointer (the first element is byte_offset() bytes further).
    [[nodiscard]] const T* data() const noexcept { return data_; }
    /// The extents.
    [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
    /// The strides in elements; empty for row-major.
    [[nodiscard]] const Strides& strides() const noexcept { return strides_; }
    /// The offset of the first element from data(), in bytes.
    [[nodiscard]] std::int64_t byte_offset() const noexcept { return byte_offset_; }
    /// Where the memory lives.
    [[nodiscard]] DLDevice device() const noexcept { return device_; }
    /// The rank.
    [[nodiscard]] int rank() const noexcept { return shape_.rank(); }
    /// The number of elements.
    [[nodiscard]] std::int64_t numel() const { return shape_.numel(); }
    /// False for a default-constructed (unbound) view.
    [[nodiscard]] bool bound() const noexcept { return bound_; }
    explicit operator bool() const noexcept { return bound_; }

    /// The DLTensor describing this view. It points into this object (shape, strides):
    /// use it while the view lives.
    [[nodiscard]] DLTensor dlpack() const noexcept {
        DLTensor t{};
        t.data = static_cast<void*>(data_);
        t.device = device_;
        t.ndim = shape_.rank();
        t.dtype = dtype_of<T>::value;
        t.shape = const_cast<std::int64_t*>(shape_.data());
        t.strides = strides_.rank() == 0 ? nullptr : const_cast<std::int64_t*>(strides_.data());
        t.byte_offset = static_cast<std::uint64_t>(byte_offset_);
        return t;
    }

protected:
    ConstView(const DLTensor& tensor, std::nullptr_t) : bound_(true) {
        const DLDataType want = dtype_of<T>::value;
        if (tensor.dtype.code != want.code || tensor.dtype.bits != want.bits || tensor.dtype.lanes != want.lanes) {
            throw Error(ERA_STATUS_UNSUPPORTED_DTYPE,
                        "era.hpp: the DLTensor's dtype (code " + std::to_string(tensor.dtype.code) + ", " +
                            std::to_string(tensor.dtype.bits) + " bits) is not the view's");
        }
        if (tensor.ndim < 0 || tensor.ndim > max_rank || (tensor.ndim > 0 && tensor.shape == nullptr)) {
            throw detail::shape_error("a DLTensor of rank " + std::to_string(tensor.ndim) +
                                      " (a view holds ranks 0 to " + std::to_string(max_rank) + ")");
        }
        data_ = static_cast<T*>(tensor.data);
        shape_ = Shape(tensor.shape, tensor.ndim);
        strides_ = tensor.strides ? Strides(tensor.strides, tensor.ndim) : Strides();
        byte_offset_ = static_cast<std::int64_t>(tensor.byte_offset);
        device_ = tensor.device;
    }

    T* data_ = nullptr;  // written only through View<T>, which is built from a T*
    Shape shape_;
    Strides strides_;
    std::int64_t byte_offset_ = 0;
    DLDevice device_ = DLDevice{kDLCPU, 0};
    bool bound_ = false;
};

/// A writable view: what the wrapper takes as an output. Converts to ConstView<T> (a
/// View can be an input); a ConstView or a view of const data never converts to a View.
template <typename T> class View : public ConstView<T> {
public:
    /// An unbound view (an optional output that is not wanted).
    View() noexcept = default;

    /// A view of `data` with `shape`; see ConstView's constructor.
    View(T* data, Shape shape, Strides strides = {}, std::int64_t byte_offset = 0,
         DLDevice device = DLDevice{kDLCPU, 0})
        : ConstView<T>(data, shape, strides, byte_offset, device) {}

    /// A view of a writable DLTensor; its dtype must be T's.
    static View from_dlpack(DLTensor& tensor) { return View(tensor); }

    /// The base pointer.
    [[nodiscard]] T* data() const noexcept { return this->data_; }

private:
    explicit View(const DLTensor& tensor) : ConstView<T>(tensor, nullptr) {}
};

namespace detail {
/// A contiguous range: std::data / std::size work (std::vector, std::array, C arrays,
/// std::span, ...) and the elements have a DLPack dtype.
template <typename C, typename = void> struct range_traits {
    static constexpr bool is_range = false;
    static constexpr bool is_mutable = false;
};
template <typename C>
struct range_traits<C, std::enable_if_t<std::is_pointer<decltype(std::data(std::declval<C&>()))>::value &&
                                        std::is_integral<decltype(std::size(std::declval<C&>()))>::value>> {
    using pointer = decltype(std::data(std::declval<C&>()));
    using element = std::remove_cv_t<std::remove_pointer_t<pointer>>;
    static constexpr bool is_range = has_dtype<element>::value;
    static constexpr bool is_mutable = is_range && !std::is_const<std::remove_pointer_t<pointer>>::value;
};
template <typename C> constexpr bool is_range_v = range_traits<C>::is_range;
template <typename C> constexpr bool is_mutable_range_v = range_traits<C>::is_mutable;
template <typename C> using element_t = typename range_traits<C>::element;
template <typename C> using enable_if_input_t = std::enable_if_t<is_range_v<C>, int>;
template <typename C> using enable_if_output_t = std::enable_if_t<is_mutable_range_v<C>, int>;

/// The view type of a range: View<T>, or ConstView<T> for const data.
template <typename C>
using view_t = std::conditional_t<is_mutable_range_v<C>, View<element_t<C>>, ConstView<element_t<C>>>;

/// Throws unless a range of `size` elements holds exactly `shape` (row-major).
inline void check_size(std::size_t size, const Shape& shape, const char* what) {
    const std::int64_t need = shape.numel();
    if (static_cast<std::uint64_t>(need) != static_cast<std::uint64_t>(size)) {
        throw shape_error(std::string(what) + " holds " + std::to_string(size) + " elements, but shape " +
                          shape.str() + " needs " + std::to_string(need));
    }
}

/// Throws unless every element a strided view reaches lies in [0, size).
inline void check_bounds(std::size_t size, const Shape& shape, const Strides& strides, std::int64_t offset,
                         const char* what) {
    if (strides.rank() != 0 && strides.rank() != shape.rank()) {
        throw Error(ERA_STATUS_INVALID_LAYOUT, "era.hpp: strides " + strides.str() + " for shape " + shape.str() +
                                                   ": one stride per axis");
    }
    if (shape.numel() == 0) {
        return;
    }
    if (strides.rank() == 0) {
        if (offset < 0 || static_cast<std::uint64_t>(offset) > size ||
            static_cast<std::uint64_t>(shape.numel()) > size - static_cast<std::uint64_t>(offset)) {
            throw shape_error(std::string(what) + " holds " + std::to_string(size) + " elements; shape " +
                              shape.str() + " at offset " + std::to_string(offset) + " reaches past its end");
        }
        return;
    }
    // the lowest and highest element reached; long double keeps huge strides from overflowing
    long double lo = static_cast<long double>(offset), hi = lo;
    for (int i = 0; i < shape.rank(); i++) {
        const long double reach = static_cast<long double>(shape[i] - 1) * static_cast<long double>(strides[i]);
        (reach < 0 ? lo : hi) += reach;
    }
    if (lo < 0 || hi >= static_cast<long double>(size)) {
        throw shape_error(std::string(what) + " holds " + std::to_string(size) + " elements; shape " + shape.str() +
                          " with strides " + strides.str() + " at offset " + std::to_string(offset) +
                          " reaches outside it");
    }
}
}  // namespace detail

/// A view of a contiguous range with `shape` (row-major): View<T> for mutable data,
/// ConstView<T> for const data. Throws era::Error unless the range holds exactly
/// shape.numel() elements.
template <typename C, detail::enable_if_input_t<C> = 0>
[[nodiscard]] detail::view_t<C> view(C& range, const Shape& shape) {
    detail::check_size(std::size(range), shape, "the buffer");
    return detail::view_t<C>(std::data(range), shape);
}

/// A 1-D view of a whole contiguous range.
template <typename C, detail::enable_if_input_t<C> = 0> [[nodiscard]] detail::view_t<C> view(C& range) {
    return detail::view_t<C>(std::data(range), Shape(std::size(range)));
}

/// A strided view of a contiguous range: element [i0, i1, ...] is
/// range[offset + i0*strides[0] + i1*strides[1] + ...]. Throws era::Error if any
/// element it reaches lies outside the range.
template <typename C, detail::enable_if_input_t<C> = 0>
[[nodiscard]] detail::view_t<C> view(C& range, const Shape& shape, const Strides& strides, std::int64_t offset = 0) {
    detail::check_bounds(std::size(range), shape, strides, offset, "the buffer");
    using T = detail::element_t<C>;
    return detail::view_t<C>(std::data(range), shape, strides, offset * static_cast<std::int64_t>(sizeof(T)));
}

namespace detail {
/// A view of a range for an argument of a head call, checked against `shape`, named in errors.
template <typename C> view_t<C> arg(C& range, const Shape& shape, const char* name) {
    check_size(std::size(range), shape, name);
    return view_t<C>(std::data(range), shape);
}
}  // namespace detail

/* ================================================================== configurations */

/// The head kinds (values of ERA_HEAD_KIND_*).
enum class HeadKind : EraHeadKind {
    gaussian = ERA_HEAD_KIND_GAUSSIAN,
    softmax = ERA_HEAD_KIND_SOFTMAX,
    token = ERA_HEAD_KIND_TOKEN,
};

/// How the Gaussian head learns delta (values of ERA_DELTA_OPTIMIZER_*).
enum class DeltaOptimizer : EraDeltaOptimizer {
    fixed = ERA_DELTA_OPTIMIZER_FIXED,
    sgd = ERA_DELTA_OPTIMIZER_SGD,
    adam = ERA_DELTA_OPTIMIZER_ADAM,
};

/// "gaussian", "softmax", "token" (or "kind N").
[[nodiscard]] inline std::string kind_name(EraHeadKind kind) {
    switch (kind) {
        case ERA_HEAD_KIND_GAUSSIAN: return "gaussian";
        case ERA_HEAD_KIND_SOFTMAX: return "softmax";
        case ERA_HEAD_KIND_TOKEN: return "token";
        default: return "kind " + std::to_string(kind);
    }
}

namespace detail {
/// A non-negative count of a configuration, from any integer type.
template <typename I> std::uint64_t to_count(I value, const char* name) {
    if constexpr (std::is_signed<I>::value) {
        if (value < 0) {
            throw Error(ERA_STATUS_INVALID_CONFIG, std::string("era.hpp: ") + name + " = " + std::to_string(value) +
                                                       " is negative");
        }
    }
    return static_cast<std::uint64_t>(value);
}

inline Error wrong_kind(EraHeadKind got, EraHeadKind want) {
    return Error(ERA_STATUS_WRONG_HEAD_KIND,
                 "era.hpp: a " + kind_name(got) + " head or config where a " + kind_name(want) + " one is needed");
}

/// The EraConfig behind a typed configuration: starts from era_config_default(Kind).
template <typename Derived, EraHeadKind Kind> class ConfigBase {
public:
    /// The number of threads of the head's kernels (0: ERA_NUM_THREADS or all cores).
    Derived& num_threads(std::uint32_t n) {
        c_.num_threads = n;
        return self();
    }
    [[nodiscard]] std::uint32_t num_threads() const noexcept { return c_.num_threads; }

    /// The C struct (for era_head_new and calls the wrapper does not cover).
    [[nodiscard]] const EraConfig& c_config() const noexcept { return c_; }

    /// A typed configuration from a C struct; throws era::Error for another kind.
    [[nodiscard]] static Derived from_c(const EraConfig& config) {
        if (config.kind != Kind) {
            throw wrong_kind(config.kind, Kind);
        }
        Derived d;
        d.c_ = config;
        d.c_.struct_size = static_cast<std::uint32_t>(sizeof(EraConfig));
        return d;
    }

protected:
    ConfigBase() {
        c_.struct_size = static_cast<std::uint32_t>(sizeof(EraConfig));
        check(era_config_default(Kind, &c_));
    }
    Derived& self() noexcept { return static_cast<Derived&>(*this); }

    EraConfig c_{};
};
}  // namespace detail

/// Configuration of a Gaussian head (docs/math.md#gaussian-head): action dimension D and
/// target entropy H0 (total nats of the D-dimensional Gaussian); the rest defaults to the
/// library's values. Setters chain: GaussianConfig{6, -6}.log_std_bounds(-5, 2).delta_sgd(0.05).
class GaussianConfig : public detail::ConfigBase<GaussianConfig, ERA_HEAD_KIND_GAUSSIAN> {
public:
    /// D = dim (any integer type, checked), H0 = target_entropy.
    template <typename I, typename = std::enable_if_t<detail::is_index_v<I>>>
    GaussianConfig(I dim, double target_entropy) {
        c_.dim = detail::to_count(dim, "dim");
        c_.target_entropy = target_entropy;
    }

    /// Bounds of the log-std output (default [-8, 0]).
    GaussianConfig& log_std_bounds(double min, double max) {
        c_.log_std_min = min;
        c_.log_std_max = max;
        return *this;
    }
    /// The initial compensation delta (default 0).
    GaussianConfig& delta(double value) {
        c_.delta = value;
        return *this;
    }
    /// Keep delta fixed.
    GaussianConfig& delta_fixed() {
        c_.delta_optimizer = ERA_DELTA_OPTIMIZER_FIXED;
        return *this;
    }
    /// Learn delta by gradient descent with learning rate lr.
    GaussianConfig& delta_sgd(double lr) {
        c_.delta_optimizer = ERA_DELTA_OPTIMIZER_SGD;
        c_.delta_lr = lr;
        return *this;
    }
    /// Learn delta with Adam (the default) at learning rate lr, the library's betas and epsilon.
    GaussianConfig& delta_adam(double lr) {
        c_.delta_optimizer = ERA_DELTA_OPTIMIZER_ADAM;
        c_.delta_lr = lr;
        return *this;
    }
    /// Learn delta with Adam at learning rate lr, with beta1, beta2 and epsilon.
    GaussianConfig& delta_adam(double lr, double beta1, double beta2, double eps) {
        delta_adam(lr);
        c_.delta_beta1 = beta1;
        c_.delta_beta2 = beta2;
        c_.delta_eps = eps;
        return *this;
    }

    [[nodiscard]] std::uint64_t dim() const noexcept { return c_.dim; }
    [[nodiscard]] double target_entropy() const noexcept { return c_.target_entropy; }
    [[nodiscard]] double log_std_min() const noexcept { return c_.log_std_min; }
    [[nodiscard]] double log_std_max() const noexcept { return c_.log_std_max; }
    /// The initial delta (from a head's config(): the current one).
    [[nodiscard]] double delta() const noexcept { return c_.delta; }
    [[nodiscard]] DeltaOptimizer delta_optimizer() const noexcept {
        return static_cast<DeltaOptimizer>(c_.delta_optimizer);
    }
    [[nodiscard]] double delta_lr() const noexcept { return c_.delta_lr; }
    [[nodiscard]] double delta_beta1() const noexcept { return c_.delta_beta1; }
    [[nodiscard]] double delta_beta2() const noexcept { return c_.delta_beta2; }
    [[nodiscard]] double delta_eps() const noexcept { return c_.delta_eps; }

private:
    friend class detail::ConfigBase<GaussianConfig, ERA_HEAD_KIND_GAUSSIAN>;
    GaussianConfig() = default;
};

/// Configuration of a softmax head (docs/math.md#softmax-head): n classes and target
/// entropy H0 (nats); tau defaults to the library's value.
class SoftmaxConfig : public detail::ConfigBase<SoftmaxConfig, ERA_HEAD_KIND_SOFTMAX> {
public:
    /// n = num_classes (any integer type, checked), H0 = target_entropy.
    template <typename I, typename = std::enable_if_t<detail::is_index_v<I>>>
    SoftmaxConfig(I num_classes, double target_entropy) {
        c_.num_classes = detail::to_count(num_classes, "num_classes");
        c_.target_entropy = target_entropy;
    }
    /// The sharpness tau >= e (default 4).
    SoftmaxConfig& tau(double value) {
        c_.tau = value;
        return *this;
    }

    [[nodiscard]] std::uint64_t num_classes() const noexcept { return c_.num_classes; }
    [[nodiscard]] double target_entropy() const noexcept { return c_.target_entropy; }
    [[nodiscard]] double tau() const noexcept { return c_.tau; }

private:
    friend class detail::ConfigBase<SoftmaxConfig, ERA_HEAD_KIND_SOFTMAX>;
    SoftmaxConfig() = default;
};

/// Configuration of a token head (docs/math.md#token-head); every field has a default.
class TokenConfig : public detail::ConfigBase<TokenConfig, ERA_HEAD_KIND_TOKEN> {
public:
    /// The library's defaults (k = 2, omega [0.45, 3], rho = 0.2, T = 1, advantage scaling on).
    TokenConfig() = default;

    /// The scale factor k > 1.
    TokenConfig& k(double value) {
        c_.k = value;
        return *this;
    }
    /// Sharpen below omega_low, flatten above omega_high (response entropy, nats).
    TokenConfig& omega(double low, double high) {
        c_.omega_low = low;
        c_.omega_high = high;
        return *this;
    }
    /// The fraction rho in (0, 1] of highest-entropy tokens per response.
    TokenConfig& top_fraction(double rho) {
        c_.top_fraction = rho;
        return *this;
    }
    /// The sampling temperature T > 0.
    TokenConfig& temperature(double value) {
        c_.temperature = value;
        return *this;
    }
    /// Whether advantages are divided by the scale.
    TokenConfig& advantage_scaling(bool on) {
        c_.advantage_scaling = on ? 1u : 0u;
        return *this;
    }
    /// Log-probs over the K largest logits only (any integer type, checked); 0 = the full vocabulary.
    template <typename I, typename = std::enable_if_t<detail::is_index_v<I>>> TokenConfig& vocab_topk(I top_k) {
        c_.vocab_topk = detail::to_count(top_k, "vocab_topk");
        return *this;
    }

    [[nodiscard]] double k() const noexcept { return c_.k; }
    [[nodiscard]] double omega_low() const noexcept { return c_.omega_low; }
    [[nodiscard]] double omega_high() const noexcept { return c_.omega_high; }
    [[nodiscard]] double top_fraction() const noexcept { return c_.top_fraction; }
    [[nodiscard]] double temperature() const noexcept { return c_.temperature; }
    [[nodiscard]] bool advantage_scaling() const noexcept { return c_.advantage_scaling != 0; }
    [[nodiscard]] std::uint64_t vocab_topk() const noexcept { return c_.vocab_topk; }
};

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

private:
    SoftmaxHead(EraHead* handle, bool free_on_error) : RowHead(handle, free_on_error) {}
};

/* ================================================================== token head */

/// The outputs of TokenHead::forward, as bits: choose what to compute with `|`.
enum class TokenOutput : unsigned {
    none = 0,
    logprobs = 1,          ///< c*z[y] - logsumexp(c*z), z = logits / T
    entropy = 2,           ///< H(softmax(logits / T)) per token
    scale = 4,             ///< c in {k, 1, 1/k} (the backward needs it)
    advantages = 8,        ///< A / c with advantage scaling
    response_entropy = 16, ///< the mean entropy of the response's top-rho tokens
    all = 31,
};
/// The union of two output sets.
constexpr TokenOutput operator|(TokenOutput a, TokenOutput b) noexcept {
    return static_cast<TokenOutput>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
/// True when `set` contains every output of `bits`.
constexpr bool contains(TokenOutput set, TokenOutput bits) noexcept {
    return (static_cast<unsigned>(set) & static_cast<unsigned>(bits)) == static_cast<unsigned>(bits);
}

/// Where TokenHead::forward writes, each [...] (the batch shape) of the advantages' type;
/// an unbound view is an output not wanted (it is not computed into anything).
template <typename A> struct TokenOutputViews {
    View<A> logprobs;
    View<A> entropy;
    View<A> scale;
    View<A> advantages;
    View<A> response_entropy;
};

/// Owning outputs of TokenHead::forward: pass the same object at every step and the vectors
/// are only reallocated when the batch grows. Vectors of outputs not asked for are emptied.
template <typename A> struct TokenForward {
    std::vector<A> logprobs;          ///< logp' per token (0 for masked tokens)
    std::vector<A> entropy;           ///< H per token
    std::vector<A> scale;             ///< c per token (1 for masked tokens)
    std::vector<A> advantages;        ///< A' per token
    std::vector<A> response_entropy;  ///< the token's response entropy (0 for masked tokens)
};

/// The token ERA head (docs/math.md#token-head) for LLM policy updates: per-token scale
/// decisions, reshaped log-probs and advantages, and their backward. Logits are float,
/// double, era::bf16 or era::f16; labels and response ids int32 or int64 (each its own);
/// advantages and outputs float or double. Move-only; the operations may run concurrently.
class TokenHead : public detail::HeadBase<TokenConfig, ERA_HEAD_KIND_TOKEN> {
public:
    /// Builds the head (era_head_new); throws era::Error for an invalid config.
    explicit TokenHead(const TokenConfig& config = TokenConfig()) : HeadBase(config) {}
    /// Loads a head saved by to_json; throws era::Error if the JSON holds another kind.
    [[nodiscard]] static TokenHead from_json(const std::string& json) { return TokenHead(load(json), true); }
    /// Takes ownership of a C handle; throws era::Error (and leaves it to the caller) if it is
    /// of another kind.
    [[nodiscard]] static TokenHead adopt(EraHead* handle) { return TokenHead(handle, false); }

    /// Forward over tokens of batch shape [...]: logits [..., V]; labels, response_ids
    /// (-1 = masked) and advantages [...]; writes the bound views of `out`.
    template <typename L, typename I, typename J, typename A>
    void forward(ConstView<L> logits, ConstView<I> labels, ConstView<J> response_ids, ConstView<A> advantages,
                 const TokenOutputViews<A>& out, void* stream = nullptr) const {
        check_types<L, I, J, A>();
        const DLTensor tl = logits.dlpack(), ty = labels.dlpack(), tr = response_ids.dlpack(),
                       ta = advantages.dlpack();
        DLTensor o[5] = {out.logprobs.dlpack(), out.entropy.dlpack(), out.scale.dlpack(), out.advantages.dlpack(),
                         out.response_entropy.dlpack()};
        check(era_token_forward(handle_, &tl, &ty, &tr, &ta, out.logprobs ? &o[0] : nullptr,
                                out.entropy ? &o[1] : nullptr, out.scale ? &o[2] : nullptr,
                                out.advantages ? &o[3] : nullptr, out.response_entropy ? &o[4] : nullptr, stream));
    }
    /// forward on DLTensors; any output may be null.
    void forward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                 const DLTensor& advantages, DLTensor* logprobs, DLTensor* entropy, DLTensor* scale,
                 DLTensor* advantages_out, DLTensor* response_entropy, void* stream = nullptr) const {
        check(era_token_forward(handle_, &logits, &labels, &response_ids, &advantages, logprobs, entropy, scale,
                                advantages_out, response_entropy, stream));
    }
    /// forward on contiguous ranges: logits hold `logits_shape` [..., V], the others its
    /// batch shape [...]; fills the vectors of `result` named in `want` (resizing them to
    /// the number of tokens, which reuses their memory) and empties the others.
    template <typename Lg, typename Lb, typename Id, typename Ad, typename A, detail::enable_if_input_t<Lg> = 0,
              detail::enable_if_input_t<Lb> = 0, detail::enable_if_input_t<Id> = 0, detail::enable_if_input_t<Ad> = 0>
    void forward(const Lg& logits, const Shape& logits_shape, const Lb& labels, const Id& response_ids,
                 const Ad& advantages, TokenForward<A>& result, TokenOutput want = TokenOutput::all) const {
        static_assert(std::is_same<detail::element_t<Ad>, A>::value,
                      "era: the TokenForward's type must be the advantages' type");
        const Shape batch = logits_shape.rows();
        const std::size_t n = static_cast<std::size_t>(batch.numel());
        auto bind = [&](std::vector<A>& v, TokenOutput bit) {
            if (!contains(want, bit)) {
                v.clear();
                return View<A>();
            }
            v.resize(n);
            return View<A>(v.data(), batch);
        };
        TokenOutputViews<A> out{bind(result.logprobs, TokenOutput::logprobs), bind(result.entropy, TokenOutput::entropy),
                                bind(result.scale, TokenOutput::scale),
                                bind(result.advantages, TokenOutput::advantages),
                                bind(result.response_entropy, TokenOutput::response_entropy)};
        forward(detail::arg(logits, logits_shape, "logits"), detail::arg(labels, batch, "labels"),
                detail::arg(response_ids, batch, "response_ids"), detail::arg(advantages, batch, "advantages"), out);
    }
    /// forward on contiguous ranges into a new TokenForward (allocates the outputs in `want`).
    template <typename Lg, typename Lb, typename Id, typename Ad, detail::enable_if_input_t<Lg> = 0,
              detail::enable_if_input_t<Lb> = 0, detail::enable_if_input_t<Id> = 0, detail::enable_if_input_t<Ad> = 0>
    [[nodiscard]] TokenForward<detail::element_t<Ad>> forward(const Lg& logits, const Shape& logits_shape,
                                                              const Lb& labels, const Id& response_ids,
                                                              const Ad& advantages,
                                                              TokenOutput want = TokenOutput::all) const {
        TokenForward<detail::element_t<Ad>> result;
        forward(logits, logits_shape, labels, response_ids, advantages, result, want);
        return result;
    }

    /// Backward: grad_logits (logits' shape and type) from grad_logprobs [...] and the
    /// forward's scale [...] (both float or both double).
    template <typename L, typename I, typename J, typename A>
    void backward(ConstView<L> logits, ConstView<I> labels, ConstView<J> response_ids, ConstView<A> scale,
                  ConstView<A> grad_logprobs, View<L> grad_logits, void* stream = nullptr) const {
        check_types<L, I, J, A>();
        const DLTensor tl = logits.dlpack(), ty = labels.dlpack(), tr = response_ids.dlpack(), tc = scale.dlpack(),
                       tg = grad_logprobs.dlpack();
        DLTensor tgl = grad_logits.dlpack();
        check(era_token_backward(handle_, &tl, &ty, &tr, &tc, &tg, &tgl, stream));
    }
    /// backward on DLTensors.
    void backward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                  const DLTensor& scale, const DLTensor& grad_logprobs, DLTensor& grad_logits,
                  void* stream = nullptr) const {
        check(era_token_backward(handle_, &logits, &labels, &response_ids, &scale, &grad_logprobs, &grad_logits,
                                 stream));
    }
    /// backward on contiguous ranges: logits and grad_logits hold `logits_shape`, the others
    /// its batch shape.
    template <typename Lg, typename Lb, typename Id, typename S, typename G, typename GL,
              detail::enable_if_input_t<Lg> = 0, detail::enable_if_input_t<Lb> = 0, detail::enable_if_input_t<Id> = 0,
              detail::enable_if_input_t<S> = 0, detail::enable_if_input_t<G> = 0, detail::enable_if_output_t<GL> = 0>
    void backward(const Lg& logits, const Shape& logits_shape, const Lb& labels, const Id& response_ids,
                  const S& scale, const G& grad_logprobs, GL& grad_logits) const {
        static_assert(std::is_same<detail::element_t<Lg>, detail::element_t<GL>>::value,
                      "era: grad_logits must have the logits' element type");
        static_assert(std::is_same<detail::element_t<S>, detail::element_t<G>>::value,
                      "era: scale and grad_logprobs differ in element type");
        const Shape batch = logits_shape.rows();
        backward(detail::arg(logits, logits_shape, "logits"), detail::arg(labels, batch, "labels"),
                 detail::arg(response_ids, batch, "response_ids"), detail::arg(scale, batch, "scale"),
                 detail::arg(grad_logprobs, batch, "grad_logprobs"),
                 detail::arg(grad_logits, logits_shape, "grad_logits"));
    }

    /// Per-token entropy H(softmax(logits / T)): logits [..., V] -> entropy [...] (float or double).
    template <typename L, typename E>
    void entropy(ConstView<L> logits, View<E> entropy, void* stream = nullptr) const {
        const DLTensor tl = logits.dlpack();
        DLTensor th = entropy.dlpack();
        check(era_head_entropy(handle_, &tl, &th, stream));
    }
    /// entropy on DLTensors.
    void entropy(const DLTensor& logits, DLTensor& entropy, void* stream = nullptr) const {
        check(era_head_entropy(handle_, &logits, &entropy, stream));
    }
    /// entropy on contiguous ranges: logits hold `logits_shape`, entropy one value per token.
    template <typename Lg, typename H, detail::enable_if_input_t<Lg> = 0, detail::enable_if_output_t<H> = 0>
    void entropy(const Lg& logits, H& entropy, const Shape& logits_shape) const {
        const Shape batch = logits_shape.rows();
        this->entropy(detail::arg(logits, logits_shape, "logits"), detail::arg(entropy, batch, "entropy"));
    }

private:
    TokenHead(EraHead* handle, bool free_on_error) : HeadBase(handle, free_on_error) {}

    template <typename L, typename I, typename J, typename A> static constexpr void check_types() {
        static_assert(detail::is_token_index_v<I> && detail::is_token_index_v<J>,
                      "era: labels and response ids are int32 or int64");
        static_assert(detail::is_real_v<A>, "era: advantages, scales and token outputs are float or double");
        static_assert(sizeof(L) == 2 || detail::is_real_v<L>, "era: logits are float, double, bf16 or f16");
    }
};

/* ================================================================== functions that need no head */

/// Entropy of N(mu, diag(exp(log_std))^2) per row: log_std [..., D] -> entropy [...]
/// (docs/math.md#gaussian-entropy), float or double.
template <typename T> void gaussian_entropy(ConstView<T> log_std, View<T> entropy, void* stream = nullptr) {
    const DLTensor tl = log_std.dlpack();
    DLTensor th = entropy.dlpack();
    check(era_gaussian_entropy(&tl, &th, stream));
}
/// gaussian_entropy on contiguous ranges: log_std holds `shape`, entropy one value per row.
template <typename L, typename H, detail::enable_if_input_t<L> = 0, detail::enable_if_output_t<H> = 0>
void gaussian_entropy(const L& log_std, H& entropy, const Shape& shape) {
    const Shape rows = shape.rows();
    gaussian_entropy(detail::arg(log_std, shape, "log_std"), detail::arg(entropy, rows, "entropy"));
}
/// gaussian_entropy into a new vector.
template <typename L, detail::enable_if_input_t<L> = 0>
[[nodiscard]] std::vector<detail::element_t<L>> gaussian_entropy(const L& log_std, const Shape& shape) {
    std::vector<detail::element_t<L>> h(static_cast<std::size_t>(shape.rows().numel()));
    gaussian_entropy(log_std, h, shape);
    return h;
}

/// Entropy of softmax(logits / temperature) per row: logits [..., n] (float, double, bf16,
/// f16) -> entropy [...] (float or double).
template <typename L, typename E>
void softmax_entropy(ConstView<L> logits, double temperature, View<E> entropy, void* stream = nullptr) {
    const DLTensor tl = logits.dlpack();
    DLTensor th = entropy.dlpack();
    check(era_softmax_entropy(&tl, temperature, &th, stream));
}
/// softmax_entropy on contiguous ranges: logits hold `shape`, entropy one value per row.
template <typename L, typename H, detail::enable_if_input_t<L> = 0, detail::enable_if_output_t<H> = 0>
void softmax_entropy(const L& logits, double temperature, H& entropy, const Shape& shape) {
    const Shape rows = shape.rows();
    softmax_entropy(detail::arg(logits, shape, "logits"), temperature, detail::arg(entropy, rows, "entropy"));
}

/// Entropy of TN(mean, exp(log_std), [low, high]) summed over the last axis: mean, log_std
/// [..., D] -> entropy [...] (docs/math.md#truncated-normal-entropy); infinite bounds allowed.
template <typename T>
void truncated_normal_entropy(ConstView<T> mean, ConstView<T> log_std, double low, double high, View<T> entropy,
                              void* stream = nullptr) {
    const DLTensor tm = mean.dlpack(), tl = log_std.dlpack();
    DLTensor th = entropy.dlpack();
    check(era_truncated_normal_entropy(&tm, &tl, low, high, &th, stream));
}
/// truncated_normal_entropy on contiguous ranges: mean and log_std hold `shape`.
template <typename M, typename L, typename H, detail::enable_if_input_t<M> = 0, detail::enable_if_input_t<L> = 0,
          detail::enable_if_output_t<H> = 0>
void truncated_normal_entropy(const M& mean, const L& log_std, double low, double high, H& entropy,
                              const Shape& shape) {
    const Shape rows = shape.rows();
    truncated_normal_entropy(detail::arg(mean, shape, "mean"), detail::arg(log_std, shape, "log_std"), low, high,
                             detail::arg(entropy, rows, "entropy"));
}

}  // namespace era

#endif  // ERA_HPP
