// era.hpp included twice in one translation unit (the include guard), and in a second
// translation unit (include_twice_b.cpp) of the same program: every function is inline,
// so the program links without duplicate symbols.
#include <era.hpp>
#include <era.hpp>

#include "era.hpp"

#include <cstdio>
#include <vector>

double entropy_b();  // include_twice_b.cpp

int main() {
    std::vector<double> log_std = {0.0, 0.0};
    const double a = era::gaussian_entropy(log_std, {2})[0], b = entropy_b();
    const bool ok = a == b && era::abi_compatible();
    std::printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
    return ok ? 0 : 1;
}
