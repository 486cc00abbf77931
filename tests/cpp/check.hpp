// check.hpp: a tiny assertion framework for the era C++ tests.
//
// Every CHECK* macro counts one check. A failing check prints a line with the file,
// line, current SECTION and details, and the test goes on. finish() prints exactly
// "N passed, M failed" and returns the exit code (0 only when nothing failed);
// run_tests(body) runs a test body, counting an escaped exception as a failure.
#ifndef ERA_TESTS_CPP_CHECK_HPP
#define ERA_TESTS_CPP_CHECK_HPP

#include <era.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>

namespace check {

inline int passed = 0;
inline int failed = 0;
inline const char* section = "";

inline bool record(bool ok, const char* file, int line, const std::string& what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        std::fprintf(stderr, "FAIL [%s] %s:%d: %s\n", section, file, line, what.c_str());
        std::fflush(stderr);
    }
    return ok;
}

inline bool close(double got, double want, double tol) { return std::fabs(got - want) <= tol; }

inline std::string describe_close(const char* expr, double got, double want, double tol) {
    char buf[256];
    std::snprintf(buf, sizeof buf, " = %.9g, want %.9g (tolerance %g)", got, want, tol);
    return expr + std::string(buf);
}

inline bool record_close(double got, double want, double tol, const char* expr, const char* file, int line) {
    return record(close(got, want, tol), file, line, describe_close(expr, got, want, tol));
}

template <typename Body> int run_tests(Body body) {
    try {
        body();
    } catch (const std::exception& e) {
        record(false, __FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

}  // namespace check

/// Names the group of checks that follows.
#define SECTION(name) (check::section = (name))
/// cond must be true.
#define CHECK(cond) check::record(!!(cond), __FILE__, __LINE__, #cond)
/// |got - want| <= tol.
#define CHECK_CLOSE(got, want, tol) \
    check::record_close(static_cast<double>(got), static_cast<double>(want), (tol), #got, __FILE__, __LINE__)
/// Every element of a range close to the same element of an initializer list / range.
#define CHECK_ALL_CLOSE(got, want, tol)                                                          \
    do {                                                                                         \
        const auto& got_ = (got);                                                                \
        const auto& want_ = (want);                                                              \
        std::size_t i_ = 0;                                                                      \
        bool ok_ = std::size(got_) == std::size(want_);                                          \
        for (auto w_ : want_) {                                                                  \
            if (!ok_) break;                                                                     \
            ok_ = check::close(static_cast<double>(std::data(got_)[i_]), static_cast<double>(w_), (tol)); \
            if (!ok_)                                                                            \
                check::record(false, __FILE__, __LINE__,                                         \
                              check::describe_close((std::string(#got) + "[" + std::to_string(i_) + "]").c_str(), \
                                                    static_cast<double>(std::data(got_)[i_]),   \
                                                    static_cast<double>(w_), (tol)));            \
            i_++;                                                                                \
        }                                                                                        \
        if (ok_) check::record(true, __FILE__, __LINE__, "");                                    \
        else if (std::size(got_) != std::size(want_))                                            \
            check::record(false, __FILE__, __LINE__, #got ": size differs from " #want);        \
    } while (0)
/// expr throws era::Error with the given status and a non-empty message containing `text`.
#define CHECK_THROWS_TEXT(expr, want_status, text)                                               \
    do {                                                                                         \
        std::string got_;                                                                        \
        try {                                                                                    \
            (void)(expr);                                                                        \
            got_ = "no exception";                                                               \
        } catch (const era::Error& e_) {                                                         \
            if (e_.status() != (want_status))                                                    \
                got_ = std::string("status ") + e_.status_name();                                \
            else if (e_.message().empty() || e_.message().find(text) == std::string::npos)       \
                got_ = "message '" + e_.message() + "' lacks '" + (text) + "'";                 \
        }                                                                                        \
        check::record(got_.empty(), __FILE__, __LINE__,                                          \
                      std::string(#expr " should throw " #want_status ": ") + got_);            \
    } while (0)
/// expr throws era::Error with the given status and a non-empty message.
#define CHECK_THROWS(expr, want_status) CHECK_THROWS_TEXT(expr, want_status, "")

#endif  // ERA_TESTS_CPP_CHECK_HPP
