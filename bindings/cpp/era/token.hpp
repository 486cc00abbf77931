/* era/token.hpp: the token head.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_TOKEN_HPP
#define ERA_HPP_TOKEN_HPP

#include "head.hpp"

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

namespace era {
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

    /// The one-call forward at a temperature per token (`temperature` [...], the advantages'
    /// type; null: the head's). era_token_forward_temperature.
    void forward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                 const DLTensor& advantages, const DLTensor* temperature, DLTensor* logprobs, DLTensor* entropy,
                 DLTensor* scale, DLTensor* advantages_out, DLTensor* response_entropy,
                 void* stream = nullptr) const {
        check(era_token_forward_temperature(handle_, &logits, &labels, &response_ids, &advantages, temperature,
                                            logprobs, entropy, scale, advantages_out, response_entropy, stream));
    }
    /// The one-call backward at the forward's temperatures (null: the head's).
    /// era_token_backward_temperature.
    void backward(const DLTensor& logits, const DLTensor& labels, const DLTensor& response_ids,
                  const DLTensor* temperature, const DLTensor& scale, const DLTensor& grad_logprobs,
                  DLTensor& grad_logits, void* stream = nullptr) const {
        check(era_token_backward_temperature(handle_, &logits, &labels, &response_ids, temperature, &scale,
                                             &grad_logprobs, &grad_logits, stream));
    }

    /// The split forward, first half (docs/math.md#split-token-forward): per token, the label's
    /// log-prob at the scales 1, k, 1/k (`columns` [..., 3]), the entropy and the sum of squared
    /// probabilities ([...]), in one read of the logits; a negative label marks a token to
    /// ignore. Outputs and `temperature` share a float type; any output may be null.
    void logprob_columns(const DLTensor& logits, const DLTensor& labels, const DLTensor* temperature,
                         DLTensor* columns, DLTensor* entropy, DLTensor* sum_sq, void* stream = nullptr) const {
        check(era_token_logprob_columns(handle_, &logits, &labels, temperature, columns, entropy, sum_sq, stream));
    }
    /// logprob_columns on views: columns [..., 3] and entropy [...] of type A.
    template <typename L, typename I, typename A>
    void logprob_columns(ConstView<L> logits, ConstView<I> labels, View<A> columns, View<A> entropy,
                         void* stream = nullptr) const {
        check_types<L, I, I, A>();
        const DLTensor tl = logits.dlpack(), ty = labels.dlpack();
        DLTensor tc = columns.dlpack(), th = entropy.dlpack();
        logprob_columns(tl, ty, nullptr, &tc, &th, nullptr, stream);
    }

    /// The split forward, second half: the scale decision from per-token tensors (entropy,
    /// response ids, advantages [...]); `columns` [..., 3] is needed for `logprobs` only;
    /// `column` is int32 or int64. Any output may be null. era_token_decide.
    void decide(const DLTensor& entropy, const DLTensor& response_ids, const DLTensor& advantages,
                const DLTensor* columns, DLTensor* logprobs, DLTensor* scale, DLTensor* advantages_out,
                DLTensor* response_entropy, DLTensor* column, void* stream = nullptr) const {
        check(era_token_decide(handle_, &entropy, &response_ids, &advantages, columns, logprobs, scale,
                               advantages_out, response_entropy, column, stream));
    }
    /// decide on views: the selected log-probs, the scales and the scaled advantages.
    template <typename J, typename A>
    void decide(ConstView<A> entropy, ConstView<J> response_ids, ConstView<A> advantages, ConstView<A> columns,
                View<A> logprobs, View<A> scale, View<A> advantages_out, void* stream = nullptr) const {
        check_types<A, J, J, A>();
        const DLTensor te = entropy.dlpack(), tr = response_ids.dlpack(), ta = advantages.dlpack(),
                       tc = columns.dlpack();
        DLTensor tl = logprobs.dlpack(), ts = scale.dlpack(), tao = advantages_out.dlpack();
        decide(te, tr, ta, &tc, &tl, &ts, &tao, nullptr, nullptr, stream);
    }

    /// The split forward's backward: grad_logits from the columns' gradients [..., 3] and the
    /// entropies' [...] (either may be null), at the forward's temperatures (null: the head's).
    /// era_token_columns_backward; grad_logits may be logits itself (in place).
    void columns_backward(const DLTensor& logits, const DLTensor& labels, const DLTensor* temperature,
                          const DLTensor* grad_columns, const DLTensor* grad_entropy, DLTensor& grad_logits,
                          void* stream = nullptr) const {
        check(era_token_columns_backward(handle_, &logits, &labels, temperature, grad_columns, grad_entropy,
                                         &grad_logits, stream));
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

}  // namespace era

#endif  // ERA_HPP_TOKEN_HPP
