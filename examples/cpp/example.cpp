// examples/cpp/example.cpp: the era C++ wrapper (era.hpp) on one page.
//
// A Gaussian policy head that learns its delta, a softmax classifier head, and a token
// head running a GRPO-style forward/backward on int32 token ids with only the outputs it
// needs; then a head saved and loaded as JSON. Buffers are std::vectors whose sizes the
// wrapper checks against the shapes. Every failing call throws era::Error; main() turns
// that into exit status 1.
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

void print_row(const char* name, const double* x, std::size_t n) {
    std::printf("%s = [", name);
    for (std::size_t i = 0; i < n; i++) std::printf("%s%6.2f", i ? ", " : "", x[i]);
    std::printf("]");
}

era::GaussianHead gaussian_demo() {
    // A policy head for a 6-dimensional action: log-stds in [-5, 2], the official target of
    // 0.25 nats per dimension, and delta learned with Adam.
    const std::size_t dim = 6;
    era::GaussianHead head(era::GaussianConfig{dim, 0.25 * dim}.log_std_bounds(-5, 2).delta_adam(0.05));
    const era::GaussianConfig config = head.config();
    std::printf("== Gaussian head: D = %zu, H0 = %.2f, log_std in [%.0f, %.0f]\n", dim, config.target_entropy(),
                config.log_std_min(), config.log_std_max());

    std::vector<double> z = random_vector(4 * dim), log_std(z.size()), entropy(z.size() / dim);
    const era::Shape shape = {z.size() / dim, dim};  // [rows, D]
    auto show = [&]() {
        head.forward(z, log_std, shape);
        head.entropy(log_std, entropy, shape);
        for (std::size_t r = 0; r < entropy.size(); r++) {
            std::printf("  row %zu  ", r);
            print_row("log_std", &log_std[r * dim], dim);
            const double target = config.target_entropy() + head.delta();
            std::printf("  entropy %.4f >= H0 + delta = %.4f\n", entropy[r], target);
            expect(entropy[r] >= target - 1e-9, "Gaussian entropy >= H0 + delta");
        }
    };
    show();

    const std::vector<double> grad_z = head.backward(z, random_vector(z.size()), shape);
    std::printf("  backward, row 0: ");
    print_row("dz", grad_z.data(), dim);
    std::printf("\n");

    // The agent measures the entropy of its bounded (tanh / truncated) policy; here it is
    // made up to sit 1.5 nats below the Gaussian. delta rises to compensate.
    std::printf("  learning delta (Adam, lr %.2f):\n", config.delta_lr());
    for (int step = 1; step <= 5; step++) {
        const double bounded_entropy = config.target_entropy() + head.delta() - 1.5;
        const double delta = head.update_delta(bounded_entropy);
        std::printf("    step %d: bounded entropy %.4f -> delta %.4f\n", step, bounded_entropy, delta);
    }
    std::printf("  after learning, the same rows:\n");
    show();
    return head;
}

void softmax_demo() {
    // A 10-class classifier head whose predictions keep at least 1 nat of entropy.
    const std::size_t rows = 4, classes = 10;
    era::SoftmaxHead head(era::SoftmaxConfig{classes, 1.0});
    const era::SoftmaxConfig config = head.config();
    std::printf("\n== Softmax head: n = %zu, H0 = %.2f, tau = %.1f\n", classes, config.target_entropy(), config.tau());

    std::vector<double> z(rows * classes);
    for (std::size_t r = 0; r < rows; r++) {  // row r has logits of scale 10^r
        std::vector<double> row = random_vector(classes, std::pow(10.0, r));
        std::copy(row.begin(), row.end(), z.begin() + r * classes);
    }
    const era::Shape shape = {rows, classes};
    const std::vector<double> out = head.forward(z, shape);
    const std::vector<double> entropy = head.entropy(out, shape);
    std::vector<double> raw_entropy(rows);
    era::softmax_entropy(z, 1.0, raw_entropy, shape);  // H(softmax(z)) of the raw logits
    for (std::size_t r = 0; r < rows; r++) {
        std::printf("  row %zu (logit scale %5.0f): H(softmax(z)) = %.4f -> H(softmax(out)) = %.4f >= H0\n", r,
                    std::pow(10.0, r), raw_entropy[r], entropy[r]);
        expect(entropy[r] >= config.target_entropy(), "softmax entropy >= H0");
    }

    const std::vector<double> grad_z = head.backward(z, random_vector(z.size()), shape);
    std::printf("  backward, row 0: ");
    print_row("dz", grad_z.data(), classes);
    std::printf("\n");
}

void token_demo() {
    // A GRPO-style update on a tiny batch: int32 token ids as a tokenizer gives them.
    const std::size_t tokens = 8, vocab = 32;
    era::TokenHead head;  // the official defaults
    const era::TokenConfig config = head.config();
    std::printf("\n== Token head: N = %zu tokens, V = %zu, k = %.0f, omega = [%.2f, %.2f]\n", tokens, vocab,
                config.k(), config.omega_low(), config.omega_high());

    // Two interleaved responses and one padding token (id -1). Response 0 is confident,
    // response 1 nearly uniform; both have positive advantages: ERA sharpens response 0
    // (scale k) and flattens response 1 (scale 1/k).
    const std::vector<std::int32_t> response = {0, 0, 1, 0, 1, 1, 0, -1};
    std::vector<std::int32_t> labels(tokens);
    std::vector<float> advantages(tokens), logits(tokens * vocab);
    std::uniform_real_distribution<float> noise(-1.0f, 1.0f);
    for (std::size_t t = 0; t < tokens; t++) {
        labels[t] = static_cast<std::int32_t>((t * 5) % vocab);
        advantages[t] = response[t] == 0 ? 1.0f : 0.5f;
        for (std::size_t v = 0; v < vocab; v++) {
            const float x = noise(rng);
            logits[t * vocab + v] =
                response[t] == 0 ? x + (static_cast<std::int32_t>(v) == labels[t] ? 10.0f : 0.0f) : 0.1f * x;
        }
    }
    const era::Shape logits_shape = {tokens, vocab};

    // Ask for the outputs the loss needs (plus two to print); `step` is reused every update.
    era::TokenForward<float> step;
    using era::TokenOutput;
    head.forward(logits, logits_shape, labels, response, advantages, step,
                 TokenOutput::logprobs | TokenOutput::scale | TokenOutput::advantages | TokenOutput::entropy |
                     TokenOutput::response_entropy);
    std::printf("  token  resp  label      A   entropy  H_resp  scale  logprob'       A'\n");
    for (std::size_t t = 0; t < tokens; t++) {
        std::printf("  %5zu  %4d  %5d  %5.2f  %8.4f  %6.3f  %5.2f  %8.4f  %7.3f\n", t, response[t], labels[t],
                    advantages[t], step.entropy[t], step.response_entropy[t], step.scale[t], step.logprobs[t],
                    step.advantages[t]);
    }
    expect(step.scale[0] == 2.0f && step.scale[2] == 0.5f && step.scale[7] == 1.0f,
           "token scales: sharpen, flatten, masked");

    // Policy-gradient loss L = -mean_t A'_t * logprob'_t over the valid tokens.
    std::vector<float> grad_logprobs(tokens), grad_logits(logits.size());
    for (std::size_t t = 0; t < tokens; t++) {
        grad_logprobs[t] = response[t] < 0 ? 0.0f : -step.advantages[t] / static_cast<float>(tokens - 1);
    }
    head.backward(logits, logits_shape, labels, response, step.scale, grad_logprobs, grad_logits);
    double masked = 0.0;
    for (std::size_t v = 0; v < vocab; v++) masked += std::fabs(grad_logits[7 * vocab + v]);
    std::printf("  backward: d logits[2][label] = %.5f, masked token |grad| = %g\n",
                grad_logits[2 * vocab + static_cast<std::size_t>(labels[2])], masked);
    expect(masked == 0.0, "masked token gets zero gradient");

    // The next update needs only the old log-probs: the other vectors are emptied and
    // nothing is reallocated.
    head.forward(logits, logits_shape, labels, response, advantages, step, TokenOutput::logprobs);
    std::printf("  old log-probs only: %zu log-probs, %zu scales kept\n", step.logprobs.size(), step.scale.size());
}

void json_demo(const era::GaussianHead& head) {
    const std::string json = head.to_json();
    std::printf("\n== JSON: %s\n", json.c_str());
    const era::GaussianHead loaded = era::GaussianHead::from_json(json);
    expect(loaded.to_json() == json && loaded.delta() == head.delta(), "JSON round trip");
    std::printf("  loaded back: same JSON, delta %.4f\n", loaded.delta());
}

}  // namespace

int main() {
    try {
        std::printf("era %s (ABI %u)\n\n", era::version().c_str(), era::abi_version());
        era::check_abi();  // throws if the loaded library does not match era.h

        era::GaussianHead gaussian = gaussian_demo();
        softmax_demo();
        token_demo();
        json_demo(gaussian);

        // Errors are exceptions carrying the status and the library's message.
        try {
            era::GaussianHead infeasible(era::GaussianConfig{2, 100.0});
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
