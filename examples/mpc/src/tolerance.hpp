// tolerance.hpp: dm_control's reward shaping function, rewards.tolerance, for scalars.
//
// dm_control/utils/rewards.py defines tolerance(x, bounds, margin, sigmoid, value_at_margin):
// 1 inside [lower, upper]; outside, a sigmoid of the distance to the nearest bound divided by
// margin, equal to value_at_margin at distance == margin; with margin 0, 0 outside. The task
// rewards in tasks.cpp use the sigmoids below; the defaults are bounds (0, 0), sigmoid
// gaussian, value_at_margin 0.1, as in dm_control.
#pragma once

#include <cmath>
#include <limits>
#include <stdexcept>

namespace mpc {

enum class Sigmoid { gaussian, linear, quadratic };

/// The sigmoid of rewards._sigmoids at distance x >= 0 (in units of margin): 1 at x = 0 and
/// value_at_1 at x = 1.
inline double sigmoid(double x, double value_at_1, Sigmoid kind) {
    switch (kind) {
        case Sigmoid::gaussian: {
            if (!(value_at_1 > 0.0 && value_at_1 < 1.0)) throw std::invalid_argument("gaussian value_at_1 must be in (0, 1)");
            const double scale = std::sqrt(-2.0 * std::log(value_at_1));
            return std::exp(-0.5 * (x * scale) * (x * scale));
        }
        case Sigmoid::linear: {
            if (!(value_at_1 >= 0.0 && value_at_1 < 1.0)) throw std::invalid_argument("linear value_at_1 must be in [0, 1)");
            const double scaled = x * (1.0 - value_at_1);
            return std::fabs(scaled) < 1.0 ? 1.0 - scaled : 0.0;
        }
        case Sigmoid::quadratic: {
            if (!(value_at_1 >= 0.0 && value_at_1 < 1.0)) throw std::invalid_argument("quadratic value_at_1 must be in [0, 1)");
            const double scaled = x * std::sqrt(1.0 - value_at_1);
            return std::fabs(scaled) < 1.0 ? 1.0 - scaled * scaled : 0.0;
        }
    }
    throw std::invalid_argument("unknown sigmoid");
}

/// Arguments of tolerance() other than x, with dm_control's defaults.
struct Tol {
    double lower = 0.0;
    double upper = 0.0;
    double margin = 0.0;
    Sigmoid kind = Sigmoid::gaussian;
    double value_at_margin = 0.1;
};

/// rewards.tolerance(x, bounds=(t.lower, t.upper), margin=t.margin, sigmoid=t.kind,
/// value_at_margin=t.value_at_margin) for one value.
inline double tolerance(double x, const Tol& t) {
    if (t.lower > t.upper) throw std::invalid_argument("tolerance: lower bound above upper bound");
    if (t.margin < 0.0) throw std::invalid_argument("tolerance: negative margin");
    const bool in_bounds = t.lower <= x && x <= t.upper;
    if (in_bounds) return 1.0;
    if (t.margin == 0.0) return 0.0;
    const double d = (x < t.lower ? t.lower - x : x - t.upper) / t.margin;
    return sigmoid(d, t.value_at_margin, t.kind);
}

constexpr double inf = std::numeric_limits<double>::infinity();

}  // namespace mpc
