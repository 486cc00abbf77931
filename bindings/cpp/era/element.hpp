/* era/element.hpp: the element types (bf16, f16) and their DLPack dtypes.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_ELEMENT_HPP
#define ERA_HPP_ELEMENT_HPP

#include "error.hpp"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace era {
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

}  // namespace era

#endif  // ERA_HPP_ELEMENT_HPP
