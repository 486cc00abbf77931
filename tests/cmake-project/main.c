/* tests/cmake-project/main.c: links the installed era and checks the basics. */
#include <era.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define STR2(x) #x
#define STR(x) STR2(x)

static int failures = 0;

static void expect(int ok, const char* what) {
    if (!ok) {
        char message[256];
        era_last_error(message, sizeof message);
        fprintf(stderr, "FAIL: %s (last error: %s)\n", what, message);
        failures++;
    }
}

int main(void) {
    const char* header_version =
        STR(ERA_VERSION_MAJOR) "." STR(ERA_VERSION_MINOR) "." STR(ERA_VERSION_PATCH);
    printf("era %s, ABI %u (header: %s, ABI %u; CMake package: %s)\n", era_version(),
           era_abi_version(), header_version, (unsigned)ERA_ABI_VERSION, ERA_EXPECTED_VERSION);
    expect(era_abi_version() == ERA_ABI_VERSION, "era_abi_version() == ERA_ABI_VERSION");
    expect(strcmp(era_version(), header_version) == 0, "era_version() matches ERA_VERSION_*");
    expect(strcmp(era_version(), ERA_EXPECTED_VERSION) == 0, "era_version() matches the CMake package");

    /* docs/math.md#gaussian-head, worked example: D = 3, H0 = -1.5, bounds [-5, 0], delta = 0. */
    EraConfig config;
    EraHead* head = NULL;
    expect(era_config_default(ERA_HEAD_KIND_GAUSSIAN, &config) == ERA_STATUS_OK, "era_config_default");
    config.dim = 3;
    config.target_entropy = -1.5;
    config.log_std_min = -5.0;
    config.log_std_max = 0.0;
    config.delta = 0.0;
    expect(era_head_new(&config, &head) == ERA_STATUS_OK, "era_head_new");
    if (head != NULL) {
        double z[3] = {0.5, -1.0, 2.0}, out[3] = {0, 0, 0};
        const double want[3] = {-1.009114, -0.225164, -4.522537};
        int64_t shape[1] = {3};
        DLTensor tz, tout;
        memset(&tz, 0, sizeof tz);
        tz.data = z;
        tz.device.device_type = kDLCPU;
        tz.ndim = 1;
        tz.dtype.code = kDLFloat;
        tz.dtype.bits = 64;
        tz.dtype.lanes = 1;
        tz.shape = shape;
        tout = tz;
        tout.data = out;
        expect(era_head_forward(head, &tz, &tout, NULL) == ERA_STATUS_OK, "era_head_forward");
        for (int i = 0; i < 3; i++) expect(fabs(out[i] - want[i]) < 1e-5, "worked example output");
        era_head_free(head);
    }

    if (failures == 0) printf("ok\n");
    return failures == 0 ? 0 : 1;
}
