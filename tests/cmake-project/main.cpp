// tests/cmake-project/main.cpp: the installed era.hpp compiles and links (C++17), and the
// Gaussian worked example of docs/math.md comes out of it.
#include <era.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

bool close_to(const std::vector<double>& got, const std::vector<double>& want) {
    for (std::size_t i = 0; i < want.size(); i++) {
        if (got.size() != want.size() || std::fabs(got[i] - want[i]) > 1e-5) {
            std::fprintf(stderr, "FAIL: element %zu is %f, want %f\n", i, got[i], want[i]);
            return false;
        }
    }
    return true;
}

}  // namespace

int main() {
    try {
        era::check_abi();
        if (era::version() != ERA_EXPECTED_VERSION) {
            std::fprintf(stderr, "FAIL: version %s\n", era::version().c_str());
            return 1;
        }
        // D = 3, H0 = -1.5, bounds [-5, 0], delta = 0 (docs/math.md#worked-examples)
        era::GaussianHead head(era::GaussianConfig{3, -1.5}.log_std_bounds(-5, 0).delta_fixed());
        const std::vector<double> z = {0.5, -1.0, 2.0}, grad_out = {1.0, 2.0, -1.0};
        const era::Shape shape = {z.size() / 3, 3};
        if (!close_to(head.forward(z, shape), {-1.009114, -0.225164, -4.522537})) return 1;
        if (!close_to(head.backward(z, grad_out, shape), {-1.546046, -0.570133, 2.116179})) return 1;

        // delta as an input: d loss / d delta of the worked example
        std::vector<double> grad_z(3);
        const double grad_delta = head.backward_delta(z, 0.0, grad_out, grad_z, shape);
        if (!close_to({grad_delta}, {-0.532081})) return 1;

        era::GaussianHead copy = era::GaussianHead::from_json(head.to_json());
        copy.set_delta(0.5);
        if (copy.delta() != 0.5 || copy.config().delta() != 0.5) return 1;

        try {  // errors are exceptions with the status
            era::SoftmaxHead bad(era::SoftmaxConfig{1, 0.5});
            std::fprintf(stderr, "FAIL: num_classes = 1 accepted\n");
            return 1;
        } catch (const era::Error& e) {
            std::printf("expected error: %s\n", e.what());
        }
        std::printf("ok (era %s)\n", era::version().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "FAIL: %s\n", e.what());
        return 1;
    }
}
