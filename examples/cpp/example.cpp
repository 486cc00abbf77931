// examples/cpp/example.cpp: the era C++ wrapper (era.hpp) on one page.
//
// Builds the three ERA heads, runs forward/backward on a few random rows, prints the
// entropy of each result next to its target, learns the Gaussian head's delta, runs the
// token head on a tiny batch, and saves/loads a head as JSON. Every failing call throws
// era::Error; main() turns that into exit status 1.
#include <era.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::mt19937_64 rng(42);

// n numbers uniform in [-scale, scale).
std::vector<double> random_vector(std::size_t n, double scale = 1.0) {
    std::uniform_real_distribution<double> uniform(-scale, scale);
    std::vector<double> v(n);
    for (auto& x : v) x = uniform(rng);
    return v;
}

void expect(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("check failed: ") + what);
}

void print_row(const char* name, const double* x, int n) {
    std::printf("%s = [", name);
    for (int i = 0; i < n; i++) std::printf("%s%6.2f", i ? ", " : "", x[i]);
    std::printf("]");
}

era::Head gaussian_demo() {
    const int rows = 4, dim = 6;
    EraConfig config = era::gaussian_config(dim, 0.25 * dim);  // the official script's target
    config.log_std_min = -5.0;
    config.log_std_max = 2.0;
    config.delta_optimizer = ERA_DELTA_OPTIMIZER_ADAM;
    config.delta_lr = 0.05;
    era::Head head(config);
    std::printf("== Gaussian head: D = %d, H0 = %.2f, log_std in [%.0f, %.0f]\n", dim,
                config.target_entropy, config.log_std_min, config.log_std_max);

    std::vector<double> z = random_vector(rows * dim), log_std(rows * dim), entropy(rows);
    auto show = [&]() {
        head.forward(z.data(), log_std.data(), {rows, dim});
        head.entropy(log_std.data(), entropy.data(), {rows, dim});
        for (int r = 0; r < rows; r++) {
            std::printf("  row %d  ", r);
            print_row("log_std", &log_std[r * dim], dim);
            double target = config.target_entropy + head.delta();
            std::printf("  entropy %.4f >= H0 + delta = %.4f\n", entropy[r], target);
            expect(entropy[r] >= target - 1e-9, "Gaussian entropy >= H0 + delta");
        }
    };
    show();

    std::vector<double> grad_out = random_vector(rows * dim), grad_z(rows * dim);
    head.backward(z.data(), grad_out.data(), grad_z.data(), {rows, dim});
    std::printf("  backward, row 0: ");
    print_row("dz", grad_z.data(), dim);
    std::printf("\n");

    // The agent measures the entropy of its bounded (tanh / truncated) policy; here it is
    // made up to sit 1.5 nats below the Gaussian. delta rises to compensate.
    std::printf("  learning delta (Adam, lr %.2f):\n", config.delta_lr);
    for (int step = 1; step <= 5; step++) {
        double bounded_entropy = config.target_entropy + head.delta() - 1.5;
        double delta = head.update_delta(bounded_entropy);
        std::printf("    step %d: bounded entropy %.4f -> delta %.4f\n", step, bounded_entropy, delta);
    }
    std::printf("  after learning, the same rows:\n");
    show();
    return head;
}

void softmax_demo() {
    const int rows = 4, n = 10;
    era::Head head(era::softmax_config(n, 1.0));
    EraConfig config = head.config();
    std::printf("\n== Softmax head: n = %d, H0 = %.2f, tau = %.1f\n", n, config.target_entropy, config.tau);

    std::vector<double> z(rows * n), out(rows * n), entropy(rows), raw_entropy(rows);
    for (int r = 0; r < rows; r++) {  // row r has logits of scale 10^r
        std::vector<double> row = random_vector(n, std::pow(10.0, r));
        std::copy(row.begin(), row.end(), z.begin() + r * n);
    }
    head.forward(z.data(), out.data(), {rows, n});
    head.entropy(out.data(), entropy.data(), {rows, n});
    // H(softmax(z)) of the raw logits, for comparison: a token head with T = 1 computes it.
    era::Head plain(era::token_config());
    plain.entropy(z.data(), raw_entropy.data(), {rows, n});
    for (int r = 0; r < rows; r++) {
        std::printf("  row %d (logit scale %5.0f): H(softmax(z)) = %.4f -> H(softmax(out)) = %.4f >= H0\n",
                    r, std::pow(10.0, r), raw_entropy[r], entropy[r]);
        expect(entropy[r] >= config.target_entropy, "softmax entropy >= H0");
    }

    std::vector<double> grad_out = random_vector(rows * n), grad_z(rows * n);
    head.backward(z.data(), grad_out.data(), grad_z.data(), {rows, n});
    std::printf("  backward, row 0: ");
    print_row("dz", grad_z.data(), n);
    std::printf("\n");
}

void token_demo() {
    const std::int64_t tokens = 8, vocab = 32;
    era::Head head(era::token_config());
    EraConfig config = head.config();
    std::printf("\n== Token head: N = %lld tokens, V = %lld, k = %.0f, omega = [%.2f, %.2f]\n",
                (long long)tokens, (long long)vocab, config.k, config.omega_low, config.omega_high);

    // Two interleaved responses and one padding token (id -1). Response 0 is confident,
    // response 1 nearly uniform; both have positive advantages: ERA sharpens response 0
    // (scale k) and flattens response 1 (scale 1/k).
    std::vector<std::int64_t> response = {0, 0, 1, 0, 1, 1, 0, -1}, labels(tokens);
    std::vector<float> advantages(tokens), logits(tokens * vocab);
    std::uniform_real_distribution<float> noise(-1.0f, 1.0f);
    for (std::int64_t t = 0; t < tokens; t++) {
        labels[t] = (t * 5) % vocab;
        advantages[t] = response[t] == 0 ? 1.0f : 0.5f;
        for (std::int64_t v = 0; v < vocab; v++) {
            float x = noise(rng);
            logits[t * vocab + v] = response[t] == 0 ? x + (v == labels[t] ? 10.0f : 0.0f) : 0.1f * x;
        }
    }

    era::TokenOutputs<float> out =
        head.token_forward(logits.data(), labels.data(), response.data(), advantages.data(), tokens, vocab);
    std::printf("  token  resp  label      A   entropy  H_resp  scale  logprob'       A'\n");
    for (std::int64_t t = 0; t < tokens; t++) {
        std::printf("  %5lld  %4lld  %5lld  %5.2f  %8.4f  %6.3f  %5.2f  %8.4f  %7.3f\n", (long long)t,
                    (long long)response[t], (long long)labels[t], advantages[t], out.entropy[t],
                    out.response_entropy[t], out.scale[t], out.logprobs[t], out.advantages[t]);
    }
    expect(out.scale[0] == 2.0f && out.scale[2] == 0.5f && out.scale[7] == 1.0f,
           "token scales: sharpen, flatten, masked");

    // Policy-gradient loss L = -mean_t A'_t * logprob'_t over the valid tokens.
    std::vector<float> grad_logprobs(tokens), grad_logits(tokens * vocab);
    for (std::int64_t t = 0; t < tokens; t++)
        grad_logprobs[t] = response[t] < 0 ? 0.0f : -out.advantages[t] / float(tokens - 1);
    head.token_backward(logits.data(), labels.data(), response.data(), out.scale.data(),
                        grad_logprobs.data(), grad_logits.data(), tokens, vocab);
    double masked = 0.0;
    for (std::int64_t v = 0; v < vocab; v++) masked += std::fabs(grad_logits[7 * vocab + v]);
    std::printf("  backward: d logits[2][label] = %.5f, masked token |grad| = %g\n",
                grad_logits[2 * vocab + labels[2]], masked);
    expect(masked == 0.0, "masked token gets zero gradient");
}

void json_demo(const era::Head& head) {
    std::string json = head.to_json();
    std::printf("\n== JSON: %s\n", json.c_str());
    era::Head loaded = era::Head::from_json(json);
    expect(loaded.to_json() == json && loaded.delta() == head.delta(), "JSON round trip");
    expect(loaded.kind() == ERA_HEAD_KIND_GAUSSIAN, "JSON round trip keeps the kind");
    std::printf("  loaded back: same JSON, delta %.4f\n", loaded.delta());
}

}  // namespace

int main() {
    try {
        std::printf("era %s (ABI %u)\n\n", era::version().c_str(), era::abi_version());
        expect(era::abi_compatible(), "library ABI matches era.h");

        era::Head gaussian = gaussian_demo();
        softmax_demo();
        token_demo();
        json_demo(gaussian);

        // Errors are exceptions carrying the status and the library's message.
        try {
            era::Head infeasible(era::gaussian_config(2, 100.0));
            expect(false, "an infeasible target must be rejected");
        } catch (const era::Error& e) {
            std::printf("\n== Errors: H0 = 100 for D = 2 -> %s\n", e.what());
            expect(e.status() == ERA_STATUS_INFEASIBLE_TARGET, "INFEASIBLE_TARGET status");
        }
        std::printf("\nall good\n");
        return 0;
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
