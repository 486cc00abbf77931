/*
 * examples/c/example.c: the era C API on one page.
 *
 * Builds the three ERA heads, runs forward/backward on a few random rows, prints the
 * entropy of each result next to its target, learns the Gaussian head's delta for a few
 * steps, runs the token head on a tiny batch, and saves/loads a head as JSON.
 * Exits with status 1 on any failure.
 */
#include <era.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

/* Every era call returns a status; on failure, era_last_error() says why. */
static void check(EraStatus status, const char* what) {
    if (status != ERA_STATUS_OK) {
        char message[512];
        era_last_error(message, sizeof message);
        fflush(stdout);
        fprintf(stderr, "error: %s\n  -> %s: %s\n", what, era_status_str(status), message);
        exit(1);
    }
}
#define CHECK(call) check((call), #call)

static void expect(int ok, const char* what) {
    if (!ok) {
        fflush(stdout);
        fprintf(stderr, "error: check failed: %s\n", what);
        exit(1);
    }
}

static const DLDataType F32 = {kDLFloat, 32, 1};
static const DLDataType F64 = {kDLFloat, 64, 1};
static const DLDataType I64 = {kDLInt, 64, 1};

/* A DLPack descriptor of a row-major host buffer (strides NULL = row-major). */
static DLTensor tensor(void* data, DLDataType dtype, int32_t ndim, int64_t* shape) {
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    t.ndim = ndim;
    t.dtype = dtype;
    t.shape = shape;
    t.strides = NULL;
    t.byte_offset = 0;
    return t;
}

/* A small deterministic generator: uniform in [-1, 1). */
static double uniform(void) {
    static uint64_t state = 0x2545F4914F6CDD1DULL;
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(state >> 11) / 4503599627370496.0 - 1.0;
}

/* Entropy of softmax(z) for one row, computed here only to compare with the head. */
static double softmax_entropy(const double* z, int n) {
    double max = z[0], sum = 0.0, dot = 0.0;
    for (int i = 1; i < n; i++) max = z[i] > max ? z[i] : max;
    for (int i = 0; i < n; i++) {
        double e = exp(z[i] - max);
        sum += e;
        dot += e * (z[i] - max);
    }
    return log(sum) - dot / sum;
}

/* ------------------------------------------------------------ Gaussian head */
#define G_ROWS 4
#define G_DIM 6

static EraHead* gaussian_demo(void) {
    EraConfig config;
    CHECK(era_config_default(ERA_HEAD_KIND_GAUSSIAN, &config));
    config.dim = G_DIM;
    config.target_entropy = -(double)G_DIM; /* SAC's usual target, -D nats */
    config.log_std_min = -5.0;
    config.log_std_max = 2.0;
    config.delta_optimizer = ERA_DELTA_OPTIMIZER_ADAM;
    config.delta_lr = 0.05;
    EraHead* head = NULL;
    CHECK(era_head_new(&config, &head));

    double z[G_ROWS * G_DIM], log_std[G_ROWS * G_DIM], entropy[G_ROWS];
    double grad_out[G_ROWS * G_DIM], grad_z[G_ROWS * G_DIM];
    for (int i = 0; i < G_ROWS * G_DIM; i++) {
        z[i] = uniform();
        grad_out[i] = uniform();
    }
    int64_t shape[2] = {G_ROWS, G_DIM}, rows[1] = {G_ROWS};
    DLTensor tz = tensor(z, F64, 2, shape), tout = tensor(log_std, F64, 2, shape);
    DLTensor th = tensor(entropy, F64, 1, rows);
    DLTensor tg = tensor(grad_out, F64, 2, shape), tgz = tensor(grad_z, F64, 2, shape);

    printf("== Gaussian head: D = %d, H0 = %.2f, log_std in [%.0f, %.0f]\n", G_DIM,
           config.target_entropy, config.log_std_min, config.log_std_max);
    for (int step = 0; step <= 5; step++) {
        double delta = 0.0;
        CHECK(era_head_delta(head, &delta));
        CHECK(era_head_forward(head, &tz, &tout, NULL));
        CHECK(era_head_entropy(head, &tout, &th, NULL));
        if (step == 0 || step == 5) {
            if (step == 5) printf("  after learning, the same rows:\n");
            for (int r = 0; r < G_ROWS; r++) {
                printf("  row %d  log_std = [", r);
                for (int i = 0; i < G_DIM; i++) printf("%s%6.2f", i ? ", " : "", log_std[r * G_DIM + i]);
                printf("]  entropy %.4f >= H0 + delta = %.4f\n", entropy[r], config.target_entropy + delta);
                expect(entropy[r] >= config.target_entropy + delta - 1e-9, "Gaussian entropy >= H0 + delta");
            }
        }
        if (step == 0) {
            CHECK(era_head_backward(head, &tz, &tg, &tgz, NULL));
            double sum = 0.0;
            printf("  backward, row 0: dz = [");
            for (int i = 0; i < G_DIM; i++) {
                printf("%s%.4f", i ? ", " : "", grad_z[i]);
                sum += grad_z[i];
            }
            printf("]  (sum %.1e: softmax is shift-invariant)\n", sum);
            printf("  learning delta (Adam, lr %.2f); the squashed policy is made up to sit 2 nats"
                   " below the Gaussian:\n", config.delta_lr);
        }
        if (step < 5) {
            /* The agent would measure this entropy on its bounded (tanh / truncated) policy. */
            double bounded_entropy = config.target_entropy + delta - 2.0, new_delta = 0.0;
            CHECK(era_head_update_delta(head, bounded_entropy, &new_delta));
            printf("    step %d: bounded entropy %.4f -> delta %.4f\n", step + 1, bounded_entropy, new_delta);
        }
    }
    return head;
}

/* ------------------------------------------------------------ softmax head */
#define S_ROWS 4
#define S_CLASSES 10

static void softmax_demo(void) {
    EraConfig config;
    CHECK(era_config_default(ERA_HEAD_KIND_SOFTMAX, &config));
    config.num_classes = S_CLASSES;
    config.target_entropy = 1.0;
    EraHead* head = NULL;
    CHECK(era_head_new(&config, &head));

    /* Row r has logits of scale 10^r: the last rows are nearly one-hot. */
    double z[S_ROWS * S_CLASSES], out[S_ROWS * S_CLASSES], entropy[S_ROWS];
    double grad_out[S_ROWS * S_CLASSES], grad_z[S_ROWS * S_CLASSES];
    for (int r = 0; r < S_ROWS; r++) {
        for (int i = 0; i < S_CLASSES; i++) {
            z[r * S_CLASSES + i] = pow(10.0, r) * uniform();
            grad_out[r * S_CLASSES + i] = uniform();
        }
    }
    int64_t shape[2] = {S_ROWS, S_CLASSES}, rows[1] = {S_ROWS};
    DLTensor tz = tensor(z, F64, 2, shape), tout = tensor(out, F64, 2, shape);
    DLTensor th = tensor(entropy, F64, 1, rows);
    DLTensor tg = tensor(grad_out, F64, 2, shape), tgz = tensor(grad_z, F64, 2, shape);
    CHECK(era_head_forward(head, &tz, &tout, NULL));
    CHECK(era_head_entropy(head, &tout, &th, NULL)); /* H(softmax(out)) per row */
    CHECK(era_head_backward(head, &tz, &tg, &tgz, NULL));

    printf("\n== Softmax head: n = %d, H0 = %.2f, tau = %.1f\n", S_CLASSES, config.target_entropy, config.tau);
    for (int r = 0; r < S_ROWS; r++) {
        printf("  row %d (logit scale %5.0f): H(softmax(z)) = %.4f -> H(softmax(out)) = %.4f >= H0 = %.2f\n",
               r, pow(10.0, r), softmax_entropy(&z[r * S_CLASSES], S_CLASSES), entropy[r],
               config.target_entropy);
        expect(entropy[r] >= config.target_entropy, "softmax entropy >= H0");
    }
    double sum = 0.0;
    for (int i = 0; i < S_CLASSES; i++) sum += grad_z[i];
    printf("  backward, row 0: dz[0..2] = [%.4f, %.4f, %.4f], sum %.1e\n", grad_z[0], grad_z[1], grad_z[2], sum);
    era_head_free(head);
}

/* ------------------------------------------------------------ token head */
#define T_TOKENS 8
#define T_VOCAB 32

static void token_demo(void) {
    EraConfig config;
    CHECK(era_config_default(ERA_HEAD_KIND_TOKEN, &config)); /* k = 2, omega 0.45 / 3.0, rho 0.2 */
    EraHead* head = NULL;
    CHECK(era_head_new(&config, &head));

    /* Two responses, interleaved, plus one padding token (response id -1).
     * Response 0 is confident (low entropy), response 1 is nearly uniform (high entropy);
     * both have positive advantages, so ERA sharpens response 0 and flattens response 1. */
    int64_t response[T_TOKENS] = {0, 0, 1, 0, 1, 1, 0, -1};
    int64_t labels[T_TOKENS];
    float advantages[T_TOKENS], logits[T_TOKENS * T_VOCAB];
    for (int t = 0; t < T_TOKENS; t++) {
        labels[t] = (t * 5) % T_VOCAB;
        advantages[t] = response[t] == 0 ? 1.0f : 0.5f;
        for (int v = 0; v < T_VOCAB; v++) {
            float noise = (float)uniform();
            logits[t * T_VOCAB + v] = response[t] == 0 ? noise + (v == labels[t] ? 10.0f : 0.0f) : 0.1f * noise;
        }
    }

    float logprobs[T_TOKENS], entropy[T_TOKENS], scale[T_TOKENS], adv_out[T_TOKENS], resp_entropy[T_TOKENS];
    int64_t shape[2] = {T_TOKENS, T_VOCAB}, tokens[1] = {T_TOKENS};
    DLTensor tlogits = tensor(logits, F32, 2, shape), tlabels = tensor(labels, I64, 1, tokens);
    DLTensor tresp = tensor(response, I64, 1, tokens), tadv = tensor(advantages, F32, 1, tokens);
    DLTensor tlogp = tensor(logprobs, F32, 1, tokens), tent = tensor(entropy, F32, 1, tokens);
    DLTensor tscale = tensor(scale, F32, 1, tokens), tadv_out = tensor(adv_out, F32, 1, tokens);
    DLTensor tresp_ent = tensor(resp_entropy, F32, 1, tokens);
    CHECK(era_token_forward(head, &tlogits, &tlabels, &tresp, &tadv, &tlogp, &tent, &tscale, &tadv_out,
                            &tresp_ent, NULL));

    printf("\n== Token head: N = %d tokens, V = %d, k = %.0f, omega = [%.2f, %.2f]\n", T_TOKENS, T_VOCAB,
           config.k, config.omega_low, config.omega_high);
    printf("  token  resp  label      A   entropy  H_resp  scale  logprob'       A'\n");
    for (int t = 0; t < T_TOKENS; t++) {
        printf("  %5d  %4lld  %5lld  %5.2f  %8.4f  %6.3f  %5.2f  %8.4f  %7.3f\n", t, (long long)response[t],
               (long long)labels[t], advantages[t], entropy[t], resp_entropy[t], scale[t], logprobs[t], adv_out[t]);
    }
    expect(scale[0] == 2.0f && scale[2] == 0.5f && scale[7] == 1.0f, "token scales: sharpen, flatten, masked");

    /* Policy-gradient loss L = -mean_t A'_t * logprob'_t over the valid tokens. */
    float grad_logprobs[T_TOKENS], grad_logits[T_TOKENS * T_VOCAB];
    for (int t = 0; t < T_TOKENS; t++) grad_logprobs[t] = response[t] < 0 ? 0.0f : -adv_out[t] / (T_TOKENS - 1);
    DLTensor tgrad = tensor(grad_logprobs, F32, 1, tokens), tgrad_logits = tensor(grad_logits, F32, 2, shape);
    CHECK(era_token_backward(head, &tlogits, &tlabels, &tresp, &tscale, &tgrad, &tgrad_logits, NULL));
    double max_row_sum = 0.0, masked = 0.0;
    for (int t = 0; t < T_TOKENS; t++) {
        double sum = 0.0;
        for (int v = 0; v < T_VOCAB; v++) sum += grad_logits[t * T_VOCAB + v];
        max_row_sum = fabs(sum) > max_row_sum ? fabs(sum) : max_row_sum;
        if (response[t] < 0)
            for (int v = 0; v < T_VOCAB; v++) masked += fabs(grad_logits[t * T_VOCAB + v]);
    }
    printf("  backward: d logits[2][label] = %.5f, max |row sum| = %.1e, masked token |grad| = %g\n",
           grad_logits[2 * T_VOCAB + labels[2]], max_row_sum, masked);
    expect(masked == 0.0, "masked token gets zero gradient");
    era_head_free(head);
}

/* ------------------------------------------------------------ JSON round trip */

static char* head_to_json(const EraHead* head) {
    size_t length = 0, written = 0;
    CHECK(era_head_to_json(head, NULL, 0, &length)); /* size query */
    char* json = malloc(length + 1);
    expect(json != NULL, "malloc");
    CHECK(era_head_to_json(head, json, length + 1, &written));
    return json;
}

static void json_demo(const EraHead* head) {
    char* json = head_to_json(head);
    printf("\n== JSON: %s\n", json);

    EraHead* loaded = NULL;
    CHECK(era_head_from_json(json, &loaded));
    char* again = head_to_json(loaded);
    double delta = 0.0, loaded_delta = 0.0;
    CHECK(era_head_delta(head, &delta));
    CHECK(era_head_delta(loaded, &loaded_delta));
    expect(strcmp(json, again) == 0 && delta == loaded_delta, "JSON round trip");
    printf("  loaded back: same JSON, delta %.4f\n", loaded_delta);
    free(again);
    free(json);
    era_head_free(loaded);
}

int main(void) {
    printf("era %s (ABI %u)\n\n", era_version(), era_abi_version());
    expect(era_abi_version() == ERA_ABI_VERSION, "library ABI matches era.h");

    EraHead* gaussian = gaussian_demo();
    softmax_demo();
    token_demo();
    json_demo(gaussian);
    era_head_free(gaussian);

    /* Errors: an infeasible target is rejected with a status and a message. */
    EraConfig config;
    EraHead* head = NULL;
    CHECK(era_config_default(ERA_HEAD_KIND_GAUSSIAN, &config));
    config.dim = 2;
    config.target_entropy = 100.0;
    EraStatus status = era_head_new(&config, &head);
    char message[256];
    era_last_error(message, sizeof message);
    printf("\n== Errors: H0 = 100 for D = 2 -> %s: %s\n", era_status_str(status), message);
    expect(status == ERA_STATUS_INFEASIBLE_TARGET && head == NULL, "infeasible target rejected");

    printf("\nall good\n");
    return 0;
}
