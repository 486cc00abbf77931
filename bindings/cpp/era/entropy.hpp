/* era/entropy.hpp: the entropies that need no head.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_ENTROPY_HPP
#define ERA_HPP_ENTROPY_HPP

#include "view.hpp"

#include <cstddef>
#include <vector>

namespace era {
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

#endif  // ERA_HPP_ENTROPY_HPP
