// Code that must not compile, one case per ERA_CASE (1, 2, ...); ERA_CASE 0 is the same
// code written correctly and must compile, so that a failing case fails for its reason.
// Run by compile_fail.cmake with the compiler, standard and flags of the tests.
#include <era.hpp>

#include <cstdint>
#include <string>
#include <vector>

#ifndef ERA_CASE
#define ERA_CASE 0
#endif

void cases(const era::GaussianHead& head, era::GaussianConfig& config, const era::TokenHead& token) {
    std::vector<float> z(6), out(6);
    const std::vector<float> const_out(6);
    std::vector<double> dout(6);
    (void)head;
    (void)config;
    (void)const_out;
    (void)dout;
    (void)token;
#if ERA_CASE == 0
    head.forward(z, out, {2, 3});
    head.forward(era::view(z, {2, 3}), era::view(out, {2, 3}));
    era::View<float> v(out.data(), {6});
    (void)v;
    config.log_std_bounds(-5, 0);
    std::string json = head.to_json();
    (void)json;
    std::vector<float> adv(2);
    std::vector<std::int32_t> ids(2);
    era::TokenOutputViews<float> views;
    views.logprobs = era::view(out, {2});
    token.forward(era::view(z, {2, 3}), era::view(ids), era::view(ids), era::view(adv), views);
#elif ERA_CASE == 1  // a const container as an output
    head.forward(z, const_out, {2, 3});
#elif ERA_CASE == 2  // a view of const data as an output
    head.forward(era::view(z, {2, 3}), era::view(const_out, {2, 3}));
#elif ERA_CASE == 3  // a View of const data
    era::View<float> v(const_out.data(), {6});
    (void)v;
#elif ERA_CASE == 4  // a softmax option on a Gaussian config
    config.tau(4.0);
#elif ERA_CASE == 5  // input and output of different element types
    head.forward(z, dout, {2, 3});
#elif ERA_CASE == 6  // a result dropped ([[nodiscard]], an error under -Werror)
    head.to_json();
#elif ERA_CASE == 7  // a const buffer as an optional token output
    std::vector<float> adv(2);
    std::vector<std::int32_t> ids(2);
    era::TokenOutputViews<float> views;
    views.logprobs = era::view(const_out, {2});
    token.forward(era::view(z, {2, 3}), era::view(ids), era::view(ids), era::view(adv), views);
#elif ERA_CASE == 8  // float labels
    (void)out;
    std::vector<float> adv(2), labels(2);
    std::vector<std::int32_t> ids(2);
    token.forward(era::view(z, {2, 3}), era::view(labels), era::view(ids), era::view(adv),
                  era::TokenOutputViews<float>());
#endif
}
