// The second translation unit of test_include_twice (see include_twice_a.cpp).
#include <era.hpp>

double entropy_b() {
    std::vector<double> log_std = {0.0, 0.0};
    era::SoftmaxHead unused(era::SoftmaxConfig{2, 0.5});  // instantiates the head templates here too
    (void)unused.to_json();
    return era::gaussian_entropy(log_std, {2})[0];
}
