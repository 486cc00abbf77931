// The typed configurations: defaults from era_config_default, the setters of each kind,
// the fields a kind does not have, conversion from and to EraConfig, and the ABI helpers.
#include "check.hpp"

#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

namespace {

// Each builder exposes its own kind's fields only (detected at compile time).
template <typename C, typename = void> struct has_tau : std::false_type {};
template <typename C> struct has_tau<C, decltype(void(std::declval<C&>().tau(4.0)))> : std::true_type {};
template <typename C, typename = void> struct has_log_std_bounds : std::false_type {};
template <typename C>
struct has_log_std_bounds<C, decltype(void(std::declval<C&>().log_std_bounds(-1.0, 0.0)))> : std::true_type {};
template <typename C, typename = void> struct has_k : std::false_type {};
template <typename C> struct has_k<C, decltype(void(std::declval<C&>().k(3.0)))> : std::true_type {};
static_assert(has_tau<era::SoftmaxConfig>::value && !has_tau<era::GaussianConfig>::value &&
                  !has_tau<era::TokenConfig>::value,
              "tau belongs to the softmax head");
static_assert(has_log_std_bounds<era::GaussianConfig>::value && !has_log_std_bounds<era::SoftmaxConfig>::value &&
                  !has_log_std_bounds<era::TokenConfig>::value,
              "log-std bounds belong to the Gaussian head");
static_assert(has_k<era::TokenConfig>::value && !has_k<era::GaussianConfig>::value && !has_k<era::SoftmaxConfig>::value,
              "k belongs to the token head");

EraConfig c_default(EraHeadKind kind) {
    EraConfig c{};
    c.struct_size = sizeof c;
    era::check(era_config_default(kind, &c));
    return c;
}

void defaults() {
    SECTION("defaults are era_config_default's");
    era::GaussianConfig g{3, -1.5};
    EraConfig want = c_default(ERA_HEAD_KIND_GAUSSIAN);
    want.dim = 3;
    want.target_entropy = -1.5;
    CHECK(std::memcmp(&g.c_config(), &want, sizeof want) == 0);
    CHECK(g.log_std_min() == -8.0 && g.log_std_max() == 0.0 && g.delta() == 0.0);
    CHECK(g.delta_optimizer() == era::DeltaOptimizer::adam && g.delta_lr() == 3e-4);
    CHECK(g.delta_beta1() == 0.9 && g.delta_beta2() == 0.999 && g.delta_eps() == 1e-8 && g.num_threads() == 0);

    era::SoftmaxConfig s{10, 1.0};
    want = c_default(ERA_HEAD_KIND_SOFTMAX);
    want.num_classes = 10;
    want.target_entropy = 1.0;
    CHECK(std::memcmp(&s.c_config(), &want, sizeof want) == 0);
    CHECK(s.tau() == 4.0 && s.num_classes() == 10);

    era::TokenConfig t;
    want = c_default(ERA_HEAD_KIND_TOKEN);
    CHECK(std::memcmp(&t.c_config(), &want, sizeof want) == 0);
    CHECK(t.k() == 2.0 && t.omega_low() == 0.45 && t.omega_high() == 3.0 && t.top_fraction() == 0.2);
    CHECK(t.temperature() == 1.0 && t.advantage_scaling() && t.vocab_topk() == 0);
    CHECK(t.c_config().struct_size == sizeof(EraConfig));
    CHECK(t.c_config().reserved0 == 0 && t.c_config().reserved1 == 0 && t.c_config().reserved2 == 0);
}

void setters() {
    SECTION("Gaussian setters");
    std::size_t dim = 6;
    era::GaussianConfig g = era::GaussianConfig{dim, -6.0}.log_std_bounds(-5, 2).delta(0.1).delta_sgd(0.5).num_threads(2);
    CHECK(g.dim() == 6 && g.log_std_min() == -5.0 && g.log_std_max() == 2.0 && g.delta() == 0.1);
    CHECK(g.delta_optimizer() == era::DeltaOptimizer::sgd && g.delta_lr() == 0.5 && g.num_threads() == 2);
    g.delta_adam(0.01, 0.8, 0.99, 1e-6);
    CHECK(g.delta_optimizer() == era::DeltaOptimizer::adam && g.delta_lr() == 0.01 && g.delta_beta1() == 0.8 &&
          g.delta_beta2() == 0.99 && g.delta_eps() == 1e-6);
    CHECK(g.delta_fixed().delta_optimizer() == era::DeltaOptimizer::fixed);
    CHECK(g.c_config().delta_optimizer == ERA_DELTA_OPTIMIZER_FIXED);

    SECTION("softmax and token setters");
    int classes = 5;
    era::SoftmaxConfig s = era::SoftmaxConfig{classes, 0.9}.tau(5.0);
    CHECK(s.num_classes() == 5 && s.tau() == 5.0 && s.c_config().tau == 5.0);
    era::TokenConfig t =
        era::TokenConfig().k(3).omega(0.3, 2.5).top_fraction(0.5).temperature(0.7).advantage_scaling(false).vocab_topk(20);
    CHECK(t.k() == 3.0 && t.omega_low() == 0.3 && t.omega_high() == 2.5 && t.top_fraction() == 0.5);
    CHECK(t.temperature() == 0.7 && !t.advantage_scaling() && t.vocab_topk() == 20);
}

void round_trips() {
    SECTION("a head reports the config it was built from");
    era::TokenConfig t = era::TokenConfig().k(3).omega(0.3, 2.5).vocab_topk(20);
    era::TokenHead head(t);
    CHECK(std::memcmp(&head.config().c_config(), &t.c_config(), sizeof(EraConfig)) == 0);
    era::SoftmaxHead sh(era::SoftmaxConfig{4, 0.6});
    CHECK(sh.config().num_classes() == 4 && sh.config().target_entropy() == 0.6);

    SECTION("from_c");
    EraConfig c = c_default(ERA_HEAD_KIND_SOFTMAX);
    c.num_classes = 3;
    c.target_entropy = 0.5;
    CHECK(era::SoftmaxConfig::from_c(c).num_classes() == 3);
    CHECK_THROWS_TEXT(era::GaussianConfig::from_c(c), ERA_STATUS_WRONG_HEAD_KIND, "softmax");
    CHECK(era::kind_name(ERA_HEAD_KIND_TOKEN) == "token");
    CHECK(static_cast<EraHeadKind>(era::HeadKind::gaussian) == ERA_HEAD_KIND_GAUSSIAN);
}

void abi() {
    SECTION("ABI helpers");
    CHECK(era::abi_compatible());
    CHECK(era::abi_mismatch().empty());
    era::check_abi();
    CHECK(era_config_size() == sizeof(EraConfig));
    CHECK(era::abi_version() == ERA_ABI_VERSION);
    CHECK(era::version() == std::to_string(ERA_VERSION_MAJOR) + "." + std::to_string(ERA_VERSION_MINOR) + "." +
                                std::to_string(ERA_VERSION_PATCH));
}

}  // namespace

int main() {
    return check::run_tests([] {
        defaults();
        setters();
        round_trips();
        abi();
    });
}
