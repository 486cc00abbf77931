// tests/cmake-project/main.cpp: the installed era.hpp compiles and links (C++17).
#include <era.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

int main() {
    try {
        if (!era::abi_compatible() || era::version() != ERA_EXPECTED_VERSION) {
            std::fprintf(stderr, "FAIL: version %s / ABI %u\n", era::version().c_str(), era::abi_version());
            return 1;
        }
        EraConfig config = era::gaussian_config(3, -1.5);
        config.log_std_min = -5.0;
        config.log_std_max = 0.0;
        era::Head head(config);
        const double z[3] = {0.5, -1.0, 2.0}, want[3] = {-1.009114, -0.225164, -4.522537};
        double out[3] = {0, 0, 0};
        head.forward(z, out, {3});
        for (int i = 0; i < 3; i++) {
            if (std::fabs(out[i] - want[i]) > 1e-5) {
                std::fprintf(stderr, "FAIL: out[%d] = %f, want %f\n", i, out[i], want[i]);
                return 1;
            }
        }
        era::Head copy = era::Head::from_json(head.to_json());
        if (copy.kind() != ERA_HEAD_KIND_GAUSSIAN || copy.to_json() != head.to_json()) return 1;

        // delta as an input tensor (0-d): delta = 0 gives the same output as forward.
        double delta = 0.0, out2[3] = {0, 0, 0}, grad_out[3] = {1, 2, -1}, grad_z[3], grad_delta = 0;
        era::Tensor tz = era::make_tensor(z, {3}), tdelta = era::make_tensor(&delta, {}),
                    tout = era::make_tensor(out2, {3}), tg = era::make_tensor(grad_out, {3}),
                    tgz = era::make_tensor(grad_z, {3}), tgd = era::make_tensor(&grad_delta, {});
        head.gaussian_forward_delta(tz, tdelta, tout);
        head.gaussian_backward_delta(tz, tdelta, tg, tgz, &tgd.dl);
        const double want_dz[3] = {-1.546046, -0.570133, 2.116179};  // docs/math.md#gaussian-head
        for (int i = 0; i < 3; i++) {
            if (out2[i] != out[i] || std::fabs(grad_z[i] - want_dz[i]) > 1e-5) {
                std::fprintf(stderr, "FAIL: gaussian_*_delta row %d\n", i);
                return 1;
            }
        }
        head.set_delta(0.5);
        if (head.delta() != 0.5 || head.config().delta != 0.5) return 1;
        try {  // errors are exceptions with the status
            era::Head bad(era::softmax_config(1, 0.5));
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
