/* era/view.hpp: Shape, Strides and the strided views that become DLTensors.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_VIEW_HPP
#define ERA_HPP_VIEW_HPP

#include "element.hpp"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace era {
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

}  // namespace era

#endif  // ERA_HPP_VIEW_HPP
