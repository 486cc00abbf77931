/* era/config.hpp: the typed head configurations.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_CONFIG_HPP
#define ERA_HPP_CONFIG_HPP

#include "view.hpp"

#include <cstdint>
#include <string>
#include <type_traits>

namespace era {
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
/// library's values. Setters chain: GaussianConfig{6, -6}.log_std_bounds(-8, 0).delta_sgd(0.5) (the
/// recommended recipe, docs/settings.md; the library's default learner is Adam at 3e-4).
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

}  // namespace era

#endif  // ERA_HPP_CONFIG_HPP
