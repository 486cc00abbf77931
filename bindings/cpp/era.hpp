/*
 * era.hpp: header-only C++17 wrapper of the era C API (era.h).
 *
 *   #include <era.hpp>
 *
 *   era::GaussianHead head(era::GaussianConfig{6, -6.0}.log_std_bounds(-8, 0).delta_sgd(0.5).delta(0.853 * 6));
 *   // the recommended recipe (docs/settings.md): H0 = -D for a truncated normal on [-1, 1]
 *   std::vector<float> z(4 * 6), log_std(z.size());
 *   head.forward(z, log_std, {z.size() / 6, 6});       // sizes checked against the shape
 *
 * What is here:
 *   - era::Error (status + message) for every failing call; era::abi_compatible();
 *   - typed configurations (GaussianConfig, SoftmaxConfig, TokenConfig), each exposing only
 *     the fields of its kind, built on era_config_default;
 *   - move-only heads (GaussianHead, SoftmaxHead, TokenHead) owning an EraHead*;
 *   - era::Shape / era::Strides (braced lists of any integer type, checked) and strided,
 *     const-correct views era::ConstView<T> (inputs) and era::View<T> (outputs) that
 *     become DLPack DLTensors;
 *   - overloads for contiguous containers (anything with std::data / std::size) whose
 *     sizes are checked against the shape, and allocating conveniences that return vectors;
 *   - era::bf16 / era::f16 storage types for half-precision logits;
 *   - the head-free entropies (gaussian_entropy, softmax_entropy, truncated_normal_entropy).
 *
 * No math lives here: every operation is one call into the C library. Views and
 * DLTensors borrow memory: the buffers must outlive the call.
 */
#ifndef ERA_HPP
#define ERA_HPP

// The wrapper lives in era/*.hpp, one part per subject; this header includes them all.
#include "era/error.hpp"
#include "era/element.hpp"
#include "era/view.hpp"
#include "era/config.hpp"
#include "era/head.hpp"
#include "era/token.hpp"
#include "era/entropy.hpp"

#endif  // ERA_HPP
