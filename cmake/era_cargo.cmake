# The cargo side of every CMake build of era: this project's CMakeLists.txt and the bindings'
# own (bindings/jax, bindings/torch). Included after ERA_SOURCE_DIR names the crate (the
# directory holding Cargo.toml); messages name ${PROJECT_NAME}.
#
# Cache variables (defaults from the environment, so that `ERA_CUDA=1 pip install ...` works):
#   CARGO                 the cargo executable ($ENV{CARGO}, else cargo on PATH / ~/.cargo/bin)
#   ERA_CARGO_TARGET_DIR  cargo's target directory ($ENV{CARGO_TARGET_DIR}, else <crate>/target)
#   ERA_CARGO_FLAGS       extra arguments for `cargo build` (space separated)
#   ERA_CUDA              the CUDA kernels too: the cargo feature `cuda` ($ENV{ERA_CUDA}; nvcc at
#                         build time only, no CUDA library linked: the driver is loaded at run time)
#   ERA_NVCC              the nvcc for the kernels ($ENV{ERA_NVCC}; else build.rs looks at NVCC,
#                         CUDA_HOME/bin/nvcc, PATH)
# Sets _era_cargo_flags (ERA_CARGO_FLAGS as a list, `--features cuda` added with ERA_CUDA) and
# _era_cargo_env (the environment cargo runs in: CARGO_TARGET_DIR, and ERA_NVCC when set).

if(NOT EXISTS "${ERA_SOURCE_DIR}/Cargo.toml" OR NOT EXISTS "${ERA_SOURCE_DIR}/include/era.h")
    message(FATAL_ERROR
        "${PROJECT_NAME}: no era crate at ERA_SOURCE_DIR=${ERA_SOURCE_DIR}. ${PROJECT_NAME} builds from a "
        "checkout of the era repository, or pass -DERA_SOURCE_DIR=/path/to/era (scikit-build-core: "
        "--config-settings=cmake.define.ERA_SOURCE_DIR=...).")
endif()

if(DEFINED ENV{CARGO} AND NOT "$ENV{CARGO}" STREQUAL "")
    set(_era_default_cargo "$ENV{CARGO}")
else()
    find_program(_era_found_cargo cargo HINTS "$ENV{HOME}/.cargo/bin")
    set(_era_default_cargo "${_era_found_cargo}")
endif()
set(CARGO "${_era_default_cargo}" CACHE FILEPATH "The cargo executable")
if(NOT CARGO)
    message(FATAL_ERROR "${PROJECT_NAME}: cargo not found; install Rust (https://rustup.rs) or pass -DCARGO=/path/to/cargo")
endif()

if(DEFINED ENV{CARGO_TARGET_DIR} AND NOT "$ENV{CARGO_TARGET_DIR}" STREQUAL "")
    set(_era_default_target_dir "$ENV{CARGO_TARGET_DIR}")
else()
    set(_era_default_target_dir "${ERA_SOURCE_DIR}/target")
endif()
set(ERA_CARGO_TARGET_DIR "${_era_default_target_dir}" CACHE PATH "cargo's target directory")
set(ERA_CARGO_FLAGS "" CACHE STRING "Extra arguments for `cargo build` (space separated)")
separate_arguments(_era_cargo_flags UNIX_COMMAND "${ERA_CARGO_FLAGS}")

if(DEFINED ENV{ERA_CUDA} AND NOT "$ENV{ERA_CUDA}" MATCHES "^(|0|OFF|off|no|NO)$")
    set(_era_cuda_default ON)
else()
    set(_era_cuda_default OFF)
endif()
option(ERA_CUDA "Build era with its CUDA kernels (cargo feature cuda; nvcc at build time only)" ${_era_cuda_default})
set(ERA_NVCC "$ENV{ERA_NVCC}" CACHE FILEPATH "nvcc for the CUDA kernels (default: NVCC, CUDA_HOME/bin/nvcc, PATH)")
set(_era_cargo_env "CARGO_TARGET_DIR=${ERA_CARGO_TARGET_DIR}")
if(ERA_CUDA)
    list(APPEND _era_cargo_flags --features cuda)
    if(ERA_NVCC)
        list(APPEND _era_cargo_env "ERA_NVCC=${ERA_NVCC}")
    endif()
endif()
