/*
 * check.h: a tiny assertion framework for the era C tests.
 *
 * Every CHECK* macro counts one check (CHECK_STATUS with a failure status
 * counts two: the status itself and a non-empty era_last_error()). A failing
 * check prints one line with file, line, the current SECTION and details and
 * the test goes on. check_finish() prints exactly "N passed, M failed" and
 * returns the process exit code (0 only when nothing failed).
 */
#ifndef ERA_TESTS_CHECK_H
#define ERA_TESTS_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "era.h"

static int check_passed_ = 0;
static int check_failed_ = 0;
static const char* check_section_ = "";

/* Names the group of checks that follows (shown in failure messages). */
#define SECTION(name) (check_section_ = (name))

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static int check_impl(int ok, const char* file, int line, const char* fmt, ...) {
  if (ok) {
    check_passed_++;
    return 1;
  }
  check_failed_++;
  fprintf(stderr, "FAIL [%s] %s:%d: ", check_section_, file, line);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  return 0;
}

/* CHECK(cond): cond must be true. */
#define CHECK(cond) check_impl(!!(cond), __FILE__, __LINE__, "%s", #cond)
/* CHECK_MSG(cond, fmt, ...): cond must be true; printf-style message on failure. */
#define CHECK_MSG(cond, ...) check_impl(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* The current thread's last error message (static buffer, for messages). */
static const char* check_last_error_(void) {
  static char buf[2048];
  buf[0] = '\0';
  era_last_error(buf, sizeof buf);
  return buf;
}

static int check_status_impl(int got, int expected, const char* expr, const char* file, int line) {
  char msg[2048];
  msg[0] = '\0';
  size_t n = era_last_error(msg, sizeof msg);
  int ok = check_impl(got == expected, file, line, "%s: expected %s (%d), got %s (%d); last error: \"%s\"",
                      expr, era_status_str(expected), expected, era_status_str(got), got, msg);
  if (expected != 0 && got == expected) {
    ok &= check_impl(n > 0 && msg[0] != '\0' && strlen(msg) == (n < sizeof msg ? n : sizeof msg - 1), file, line,
                     "%s: returned %s but era_last_error is empty or inconsistent (len %zu)", expr,
                     era_status_str(got), n);
  }
  return ok;
}

/* CHECK_STATUS(expr, ERA_STATUS_X): the call returns that status; for a failure
 * status, era_last_error() must be non-empty afterwards. */
#define CHECK_STATUS(expr, expected) check_status_impl((int)(expr), (int)(expected), #expr, __FILE__, __LINE__)
/* CHECK_OK(expr): shorthand for CHECK_STATUS(expr, ERA_STATUS_OK). */
#define CHECK_OK(expr) CHECK_STATUS(expr, ERA_STATUS_OK)

/* CHECK_ERR_MENTIONS(word): the last error message mentions word (case-insensitive). */
static int check_contains_ci_(const char* hay, const char* needle) {
  size_t nl = strlen(needle);
  for (const char* p = hay; *p; p++) {
    size_t i = 0;
    while (i < nl && p[i] && ((p[i] | 32) == (needle[i] | 32))) i++;
    if (i == nl) return 1;
  }
  return nl == 0;
}
#define CHECK_ERR_MENTIONS(word)                                                                         \
  do {                                                                                                   \
    const char* m_ = check_last_error_();                                                                \
    check_impl(check_contains_ci_(m_, (word)), __FILE__, __LINE__, "last error \"%s\" does not mention \"%s\"", \
               m_, (word));                                                                              \
  } while (0)

static int check_near_impl(double got, double want, double atol, double rtol, const char* expr, const char* file,
                           int line) {
  double err = fabs(got - want);
  int ok = (got == want) || (err <= atol + rtol * fabs(want));
  return check_impl(ok, file, line, "%s: got %.17g, want %.17g (|diff| %.3g, atol %.3g, rtol %.3g)", expr, got, want,
                    err, atol, rtol);
}

/* CHECK_NEAR(got, want, atol): |got - want| <= atol (NaN fails). */
#define CHECK_NEAR(got, want, atol) check_near_impl((got), (want), (atol), 0.0, #got, __FILE__, __LINE__)
/* CHECK_CLOSE(got, want, atol, rtol): |got - want| <= atol + rtol*|want|. */
#define CHECK_CLOSE(got, want, atol, rtol) check_near_impl((got), (want), (atol), (rtol), #got, __FILE__, __LINE__)

static int check_arrays_impl(const double* got, const double* want, size_t n, double atol, double rtol,
                             const char* expr, const char* file, int line) {
  double worst = 0.0;
  size_t worst_i = 0;
  int ok = 1;
  for (size_t i = 0; i < n; i++) {
    double err = fabs(got[i] - want[i]);
    int good = (got[i] == want[i]) || (err <= atol + rtol * fabs(want[i]));
    if (!good) {
      if (ok || err > worst || isnan(err)) {
        worst = err;
        worst_i = i;
      }
      ok = 0;
    }
  }
  if (ok) return check_impl(1, file, line, "%s", expr);
  return check_impl(0, file, line, "%s: %zu elements, worst at [%zu]: got %.17g, want %.17g (atol %.3g, rtol %.3g)",
                    expr, n, worst_i, got[worst_i], want[worst_i], atol, rtol);
}

/* CHECK_ARRAY_NEAR(got, want, n, atol): element-wise |got - want| <= atol (double arrays), one check. */
#define CHECK_ARRAY_NEAR(got, want, n, atol) \
  check_arrays_impl((got), (want), (size_t)(n), (atol), 0.0, #got, __FILE__, __LINE__)
/* CHECK_ARRAY_CLOSE(got, want, n, atol, rtol): element-wise, one check. */
#define CHECK_ARRAY_CLOSE(got, want, n, atol, rtol) \
  check_arrays_impl((got), (want), (size_t)(n), (atol), (rtol), #got, __FILE__, __LINE__)

/* Prints "N passed, M failed" and returns the exit code. */
static int check_finish(void) {
  printf("%d passed, %d failed\n", check_passed_, check_failed_);
  fflush(stdout);
  return check_failed_ == 0 ? 0 : 1;
}

#endif /* ERA_TESTS_CHECK_H */
