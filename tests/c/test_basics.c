/* test_basics.c: versions, status names, last-error handling, configuration
 * defaults and the EraConfig layout. Head creation and validation, lifetime,
 * era_head_kind / era_head_config are in test_head_lifecycle.c. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define SENTINEL_HEAD ((EraHead*)(uintptr_t)0x5EA1)

static void test_last_error_initially_empty(void) {
  SECTION("last_error before any failure");
  char buf[16];
  memset(buf, 'x', sizeof buf);
  CHECK(era_last_error(NULL, 0) == 0);
  CHECK(era_last_error(buf, sizeof buf) == 0);
  CHECK(buf[0] == '\0');
}

static void test_versions(void) {
  SECTION("versions");
  CHECK(era_abi_version() == ERA_ABI_VERSION);
  const char* v = era_version();
  CHECK(v != NULL);
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", (int)ERA_VERSION_MAJOR, (int)ERA_VERSION_MINOR, (int)ERA_VERSION_PATCH);
  CHECK_MSG(v && strcmp(v, want) == 0, "era_version() = \"%s\", macros say \"%s\"", v ? v : "(null)", want);
  CHECK(era_version() == v || strcmp(era_version(), v) == 0); /* static, stable */
}

static void test_status_str(void) {
  SECTION("status_str");
  struct {
    int code;
    const char* name;
  } names[] = {
      {ERA_STATUS_OK, "ERA_STATUS_OK"},
      {ERA_STATUS_NULL_POINTER, "ERA_STATUS_NULL_POINTER"},
      {ERA_STATUS_INVALID_CONFIG, "ERA_STATUS_INVALID_CONFIG"},
      {ERA_STATUS_INFEASIBLE_TARGET, "ERA_STATUS_INFEASIBLE_TARGET"},
      {ERA_STATUS_INVALID_SHAPE, "ERA_STATUS_INVALID_SHAPE"},
      {ERA_STATUS_UNSUPPORTED_DTYPE, "ERA_STATUS_UNSUPPORTED_DTYPE"},
      {ERA_STATUS_UNSUPPORTED_DEVICE, "ERA_STATUS_UNSUPPORTED_DEVICE"},
      {ERA_STATUS_INVALID_LAYOUT, "ERA_STATUS_INVALID_LAYOUT"},
      {ERA_STATUS_INVALID_VALUE, "ERA_STATUS_INVALID_VALUE"},
      {ERA_STATUS_WRONG_HEAD_KIND, "ERA_STATUS_WRONG_HEAD_KIND"},
      {ERA_STATUS_JSON, "ERA_STATUS_JSON"},
      {ERA_STATUS_BUFFER_TOO_SMALL, "ERA_STATUS_BUFFER_TOO_SMALL"},
      {ERA_STATUS_INVALID_ARGUMENT, "ERA_STATUS_INVALID_ARGUMENT"},
      {ERA_STATUS_OUT_OF_MEMORY, "ERA_STATUS_OUT_OF_MEMORY"},
      {ERA_STATUS_DEVICE_UNAVAILABLE, "ERA_STATUS_DEVICE_UNAVAILABLE"},
      {ERA_STATUS_DEVICE_FAULT, "ERA_STATUS_DEVICE_FAULT"},
      {ERA_STATUS_INVALID_STREAM, "ERA_STATUS_INVALID_STREAM"},
      {ERA_STATUS_INTERNAL, "ERA_STATUS_INTERNAL"},
  };
  /* numbers are ABI: never reused or renumbered */
  CHECK(ERA_STATUS_OK == 0 && ERA_STATUS_NULL_POINTER == 1 && ERA_STATUS_INVALID_CONFIG == 2 &&
        ERA_STATUS_INFEASIBLE_TARGET == 3 && ERA_STATUS_INVALID_SHAPE == 4 && ERA_STATUS_UNSUPPORTED_DTYPE == 5 &&
        ERA_STATUS_UNSUPPORTED_DEVICE == 6 && ERA_STATUS_INVALID_LAYOUT == 7 && ERA_STATUS_INVALID_VALUE == 8 &&
        ERA_STATUS_WRONG_HEAD_KIND == 9 && ERA_STATUS_JSON == 10 && ERA_STATUS_BUFFER_TOO_SMALL == 11 &&
        ERA_STATUS_INVALID_ARGUMENT == 12 && ERA_STATUS_OUT_OF_MEMORY == 13 && ERA_STATUS_DEVICE_UNAVAILABLE == 14 &&
        ERA_STATUS_DEVICE_FAULT == 15 && ERA_STATUS_INVALID_STREAM == 16 && ERA_STATUS_INTERNAL == 99);
  CHECK(ERA_HEAD_KIND_GAUSSIAN == 1 && ERA_HEAD_KIND_SOFTMAX == 2 && ERA_HEAD_KIND_TOKEN == 3);
  CHECK(ERA_DELTA_OPTIMIZER_FIXED == 0 && ERA_DELTA_OPTIMIZER_SGD == 1 && ERA_DELTA_OPTIMIZER_ADAM == 2);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char* s = era_status_str(names[i].code);
    CHECK_MSG(s != NULL && strcmp(s, names[i].name) == 0, "era_status_str(%d) = \"%s\", want \"%s\"", names[i].code,
              s ? s : "(null)", names[i].name);
  }
  int unknown[] = {-1, 17, 50, 98, 100, 1000, INT32_MAX, INT32_MIN};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char* s = era_status_str(unknown[i]);
    CHECK_MSG(s != NULL && strcmp(s, "ERA_STATUS_UNKNOWN") == 0, "era_status_str(%d) = \"%s\"", unknown[i],
              s ? s : "(null)");
  }
}

static void test_last_error_buffers(void) {
  SECTION("last_error buffers");
  EraConfig cfg;
  CHECK_STATUS(era_config_default((EraHeadKind)99, &cfg), ERA_STATUS_INVALID_CONFIG);
  size_t len = era_last_error(NULL, 0);
  CHECK(len > 4);
  char full[4096];
  memset(full, 'x', sizeof full);
  CHECK(era_last_error(full, sizeof full) == len);
  CHECK(strlen(full) == len);
  /* no trailing garbage beyond the NUL terminator matters, but the message is printable */
  int printable = 1;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)full[i] < 0x20 && full[i] != '\n' && full[i] != '\t') printable = 0;
  CHECK(printable);
  /* truncation */
  char small[5];
  memset(small, 'x', sizeof small);
  CHECK(era_last_error(small, sizeof small) == len);
  /* cut to at most len - 1 bytes (at a UTF-8 boundary), NUL-terminated, a prefix of the message */
  CHECK(strlen(small) <= 4 && strlen(small) >= 1);
  CHECK(strncmp(small, full, strlen(small)) == 0);
  char one[1] = {'x'};
  CHECK(era_last_error(one, 1) == len);
  CHECK(one[0] == '\0');
  /* len 0 with a real buffer: nothing written */
  char zero[2] = {'x', 'y'};
  CHECK(era_last_error(zero, 0) == len);
  CHECK(zero[0] == 'x' && zero[1] == 'y');
  /* exactly fitting buffer */
  char* exact = (char*)malloc(len + 1);
  memset(exact, 'x', len + 1);
  CHECK(era_last_error(exact, len + 1) == len);
  CHECK(exact[len] == '\0' && strcmp(exact, full) == 0);
  free(exact);
  /* reading does not clear it */
  CHECK(era_last_error(NULL, 0) == len);

  /* a success does not need to clear it, but it must stay a valid string */
  CHECK_OK(era_config_default(ERA_HEAD_KIND_GAUSSIAN, &cfg));
  size_t after = era_last_error(full, sizeof full);
  CHECK(strlen(full) == after);

  /* a new failure replaces the message */
  CHECK_STATUS(era_head_new(NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("config");
  EraHead* h = SENTINEL_HEAD;
  CHECK_STATUS(era_head_new(NULL, &h), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("config");
  CHECK(h == SENTINEL_HEAD);
  CHECK_STATUS(era_config_default(ERA_HEAD_KIND_GAUSSIAN, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("out");
}

typedef struct {
  size_t initial_len;
  size_t after_len;
  int status;
} ThreadResult;

static void* thread_body(void* arg) {
  ThreadResult* r = (ThreadResult*)arg;
  r->initial_len = era_last_error(NULL, 0);
  EraConfig cfg;
  r->status = (int)era_config_default((EraHeadKind)0, &cfg);
  r->after_len = era_last_error(NULL, 0);
  return NULL;
}

static void test_last_error_thread_local(void) {
  SECTION("last_error is per thread");
  CHECK_STATUS(era_head_kind(NULL, NULL), ERA_STATUS_NULL_POINTER);
  char mine[1024];
  size_t mine_len = era_last_error(mine, sizeof mine);
  CHECK(mine_len > 0);
  ThreadResult r = {99, 0, -1};
  pthread_t th;
  CHECK(pthread_create(&th, NULL, thread_body, &r) == 0);
  pthread_join(th, NULL);
  CHECK_MSG(r.initial_len == 0, "a fresh thread sees a last error of length %zu", r.initial_len);
  CHECK(r.status == ERA_STATUS_INVALID_CONFIG);
  CHECK(r.after_len > 0);
  char again[1024];
  CHECK(era_last_error(again, sizeof again) == mine_len);
  CHECK(strcmp(again, mine) == 0);
}

static void test_config_default(void) {
  SECTION("config_default");
  EraHeadKind kinds[] = {ERA_HEAD_KIND_GAUSSIAN, ERA_HEAD_KIND_SOFTMAX, ERA_HEAD_KIND_TOKEN};
  for (int i = 0; i < 3; i++) {
    EraConfig c;
    memset(&c, 0xAB, sizeof c);
    CHECK_OK(era_config_default(kinds[i], &c));
    CHECK(c.struct_size == sizeof(EraConfig));
    CHECK(c.kind == kinds[i]);
    if (kinds[i] == ERA_HEAD_KIND_GAUSSIAN) {
      CHECK(isnan(c.target_entropy));
      CHECK(c.dim == 0);
      CHECK(c.log_std_min == -8.0);
      CHECK(c.log_std_max == 0.0);
      CHECK(c.delta == 0.0);
      CHECK(c.delta_optimizer == ERA_DELTA_OPTIMIZER_ADAM);
      CHECK(c.delta_lr == 3e-4);
      CHECK(c.delta_beta1 == 0.9);
      CHECK(c.delta_beta2 == 0.999);
      CHECK(c.delta_eps == 1e-8);
    } else if (kinds[i] == ERA_HEAD_KIND_SOFTMAX) {
      CHECK(isnan(c.target_entropy));
      CHECK(c.num_classes == 0);
      CHECK(c.tau == 4.0);
    } else {
      CHECK(c.k == 2.0);
      CHECK(c.omega_low == 0.45);
      CHECK(c.omega_high == 3.0);
      CHECK(c.top_fraction == 0.2);
      CHECK(c.temperature == 1.0);
      CHECK(c.advantage_scaling == 1);
      CHECK(c.vocab_topk == 0);
    }
  }
  EraConfig c;
  memset(&c, 0x5A, sizeof c);
  EraConfig before = c;
  CHECK_STATUS(era_config_default((EraHeadKind)0, &c), ERA_STATUS_INVALID_CONFIG);
  CHECK(memcmp(&c, &before, sizeof c) == 0); /* outputs written only on success */
  CHECK_STATUS(era_config_default((EraHeadKind)4, &c), ERA_STATUS_INVALID_CONFIG);
  CHECK_STATUS(era_config_default((EraHeadKind)99, &c), ERA_STATUS_INVALID_CONFIG);
  CHECK_STATUS(era_config_default((EraHeadKind)0xFFFFFFFFu, &c), ERA_STATUS_INVALID_CONFIG);
  CHECK_STATUS(era_config_default(ERA_HEAD_KIND_TOKEN, NULL), ERA_STATUS_NULL_POINTER);
}

/* The layout of EraConfig as the library sees it: size and every field's offset. */
static void test_config_layout(void) {
  SECTION("config layout");
  CHECK(era_config_size() == sizeof(EraConfig));
  CHECK(ERA_CONFIG_SIZE == sizeof(EraConfig));
  struct {
    const char* name;
    size_t offset, size;
  } fields[] = {
#define F(f) {#f, offsetof(EraConfig, f), sizeof(((EraConfig*)0)->f)}
      F(struct_size), F(kind),        F(target_entropy), F(dim),       F(log_std_min),       F(log_std_max),
      F(delta),       F(delta_optimizer), F(reserved0),  F(delta_lr),  F(delta_beta1),       F(delta_beta2),
      F(delta_eps),   F(num_classes), F(tau),            F(k),         F(omega_low),         F(omega_high),
      F(top_fraction), F(temperature), F(advantage_scaling), F(reserved1), F(vocab_topk),    F(num_threads),
      F(reserved2),
#undef F
  };
  size_t end = 0;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    size_t off = 99, sz = 99;
    CHECK_OK(era_config_field(fields[i].name, &off, &sz));
    CHECK_MSG(off == fields[i].offset && sz == fields[i].size, "%s: library %zu/%zu, header %zu/%zu", fields[i].name,
              off, sz, fields[i].offset, fields[i].size);
    /* no implicit padding: each field starts where the previous one ends */
    CHECK_MSG(fields[i].offset == end, "padding before %s", fields[i].name);
    end = fields[i].offset + fields[i].size;
  }
  CHECK(end == sizeof(EraConfig));
  size_t off = 0;
  CHECK_OK(era_config_field("tau", &off, NULL));
  CHECK(off == offsetof(EraConfig, tau));
  CHECK_STATUS(era_config_field("no_such_field", &off, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_ERR_MENTIONS("no_such_field");
  CHECK_STATUS(era_config_field(NULL, &off, NULL), ERA_STATUS_NULL_POINTER);

  SECTION("compact numbers in messages");
  EraConfig c;
  CHECK_OK(era_config_default(ERA_HEAD_KIND_SOFTMAX, &c));
  c.num_classes = 10;
  c.target_entropy = 1.0;
  c.tau = 1e300 * 1e10; /* inf */
  EraHead* h = NULL;
  CHECK_STATUS(era_head_new(&c, &h), ERA_STATUS_INVALID_CONFIG);
  c.tau = 4.0;
  c.target_entropy = 1e300;
  CHECK_STATUS(era_head_new(&c, &h), ERA_STATUS_INFEASIBLE_TARGET);
  char buf[512];
  era_last_error(buf, sizeof buf);
  CHECK_MSG(strstr(buf, "1e300") != NULL && strlen(buf) < 300, "message: %s", buf);
}

int main(void) {
  test_last_error_initially_empty();
  test_versions();
  test_status_str();
  test_last_error_buffers();
  test_last_error_thread_local();
  test_config_default();
  test_config_layout();
  return check_finish();
}
