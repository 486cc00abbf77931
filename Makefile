# era: a menu over cargo, CMake, CTest and the scripts in scripts/ and examples/.
# The README's two commands are `make demo` and `make test`.
#
#   make demo          bootstrap, examples (C, C++), demo-sac (a short SAC vs SAC-ERA run), demo-mpc (a short
#                      planner episode); it installs jax, era_jax and the examples' requirements, not torch
#   make test          bootstrap, lint, test-rust, test-msrv, test-header, test-decls, test-julia, test-cmake, test-jax,
#                      test-wheel, test-examples, test-torch, test-wheel-torch, test-mpc, test-cuda, test-wheel-cuda,
#                      test-docs
#
#   make build         cargo build --release through CMake (build/cmake)
#   make install       install headers, libraries, CMake package and era.pc into $(PREFIX)
#   make examples      install, then build and run examples/c and examples/cpp against $(PREFIX)
#   make lint          cargo fmt --check and cargo clippy --all-targets -D warnings
#   make test-rust     cargo test (debug build: overflow checks and ndarray's debug assertions on)
#   make test-msrv     the library checked with the minimum Rust of Cargo.toml (rustup installs it where missing)
#   make test-header   include/era.h must be what cbindgen generates from src/capi
#   make test-decls    the generated binding declarations must be what scripts/gen_decls.py makes of era.h
#   make test-julia    the Julia package, checked statically (no Julia runtime here: see bindings/julia/ERA/README.md)
#   make test-cmake    scripts/test-install.sh: install into a temporary prefix, then the consumers,
#                      the C/C++ tests (CTest) and the examples against it
#   make test-jax      the era_jax package into .venv (make jax-install), then its tests
#   make wheel         a self-contained era_jax wheel in dist/ (auditwheel-repaired);  make test-wheel: its
#                      tests from a fresh venv whose PATH has no cargo or cmake;  make wheel-cuda,
#                      make test-wheel-cuda: the same for the CUDA variant (dist/cuda/);  make wheel-torch,
#                      make test-wheel-torch: an era_torch wheel in dist/torch/ and its torch-only tests the same way
#   make test-examples the SAC example's tests;  make example-deps: jax-install and its requirements
#   make demo-sac      both SAC agents, HalfCheetah-v5, 10k steps, one seed
#   make test-torch    the era_torch package (and era_jax, which its tests compare it with) into .venv,
#                      then its tests and the GRPO example's;  make torch-install: torch, era_torch (with its
#                      C++ CPU kernels) and the LLM-RL frameworks its tests use;  make bench-torch: its benchmark
#   make classify-demo the softmax head on MNIST-1D and digits, every arm for one seed (examples/torch/classify_era.py);
#                      make classify-compare: the whole comparison, five seeds (about 45 minutes) and its report
#   make grpo-demo     GRPO / GRPO + entropy bonus / GRPO-ERA, one short seed (examples/torch/grpo_era.py);
#                      make grpo-compare: the full comparison (about 75 minutes on 2 cores) and its report
#   make test-mpc      examples/mpc (C++ planners on MuJoCo) against $(PREFIX), then its tests (CTest);
#                      make demo-mpc: a short episode;  make mpc-compare: the full comparison of
#                      examples/mpc/RESULTS.md (about 90 minutes);  make bench-mpc: its performance figures
#   make test-cuda     scripts/cuda.sh test: the CUDA build (nvcc from PyPI wheels) and every test that needs
#                      no GPU against it, the kernels on the CPU through tests/cuda/emu, the GPU check
#                      rehearsed on the CPU (scripts/gpu-check.sh --rehearse); make cuda-artifacts: what
#                      scripts/gpu-check.sh runs on a GPU machine (build/cuda/gpu-check), and their size
#   make docs          the API reference in build/docs (Sphinx, docs/conf.py: era_jax and era_torch, the C ABI
#                      from era.h's comments, the guides; rustdoc's pages of the crate in build/docs/rust),
#                      warnings as errors;  make test-docs: every page loads in headless Chromium (installed
#                      by scripts/bootstrap.sh --docs), no link inside the site is broken, and tests/docs
#                      (statements of the READMEs that the code must keep true)
#   make header        regenerate include/era.h;  make decls: regenerate the binding declarations
#   make bench         the native benchmark table;  make bench-jax, make bench-sac: the bindings'
#   make sac-compare   the full SAC vs SAC-ERA comparison (examples/jax/compare.sh; its longest run logged 89 minutes)
#   make sac-compare-paper  the same at the official SAC-ERA settings, HalfCheetah-v5 and Humanoid-v5
#   make ppo-compare   PPO vs PPO-ERA on four MuJoCo tasks, five seeds, tuning first (examples/jax/PPO_RESULTS.md;
#                      PPO_STEPS per seed, default 499712 (half the usual 1M): its runs took 78 minutes on 2 cores;
#                      PPO_STEPS=1000000, the full length, about 2.5 hours estimated from the measured rates)
#   make test-hardening  Miri, ASan+UBSan C tests, valgrind C tests (ctest -T memcheck), TSan, fuzz smoke:
#                      make test-miri, test-sanitize, test-valgrind, test-tsan, fuzz-smoke (every fuzz target for 20 s)
#   make fuzz          every fuzz target for FUZZ_SECONDS (default 600) each
#   make clean         remove build/ (cargo's target/ stays; `make distclean` removes it too)

PREFIX ?= $(CURDIR)/build/prefix
BUILD ?= $(CURDIR)/build
CARGO ?= cargo
CMAKE_BUILD_TYPE ?= Release
ERA_CARGO_FLAGS ?=
# Extra arguments for every `cmake` configure step, e.g. CMAKE_FLAGS="-G Ninja".
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
VENV ?= $(CURDIR)/.venv
PYTHON ?= python3
PIP = $(VENV)/bin/pip
PY = $(VENV)/bin/python
VERSION = $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
export CARGO
MAKEFLAGS += --no-print-directory

.PHONY: all bootstrap build install examples demo demo-sac test lint test-rust test-msrv test-header test-decls test-julia \
        test-cmake jax-install test-jax example-deps test-examples header decls bench bench-jax bench-sac \
        sac-compare sac-compare-paper ppo-compare test-mpc demo-mpc mpc-compare bench-mpc grpo-demo grpo-compare classify-demo classify-compare torch-install test-torch bench-torch wheel test-wheel wheel-cuda test-wheel-cuda \
        wheel-torch test-wheel-torch docs test-docs test-cuda cuda-artifacts test-hardening test-miri test-sanitize test-valgrind test-tsan fuzz fuzz-smoke clean distclean

all: build

bootstrap:
	bash scripts/bootstrap.sh

build:
	cmake -S . -B "$(BUILD)/cmake" $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) \
	    -DCMAKE_INSTALL_PREFIX="$(PREFIX)" -DERA_CARGO_FLAGS="$(ERA_CARGO_FLAGS)"
	cmake --build "$(BUILD)/cmake" --parallel $(JOBS)

install: build
	cmake --install "$(BUILD)/cmake" --prefix "$(PREFIX)"

examples: install
	for lang in c cpp; do \
	    cmake -S examples/$$lang -B "$(BUILD)/examples-$$lang" $(CMAKE_FLAGS) -U era_DIR \
	        -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) -DCMAKE_PREFIX_PATH="$(PREFIX)" && \
	    cmake --build "$(BUILD)/examples-$$lang" --parallel $(JOBS) && \
	    "$(BUILD)/examples-$$lang/example" || exit 1; \
	done

demo: bootstrap
	$(MAKE) examples demo-sac demo-mpc

TEST_STEPS = lint test-rust test-msrv test-header test-decls test-julia test-cmake test-jax test-wheel test-examples test-torch \
    test-wheel-torch test-mpc test-cuda test-wheel-cuda test-docs
test: bootstrap
	@MAKE="$(MAKE)" bash scripts/steps.sh "make test" $(TEST_STEPS)

lint: $(PY)
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	ERA_NVCC="$$(PYTHON="$(PY)" bash scripts/cuda.sh toolchain)" CARGO_TARGET_DIR="$(BUILD)/cuda-target" \
	    $(CARGO) clippy --all-targets --features cuda -- -D warnings

test-rust:
	$(CARGO) test

# The minimum Rust (Cargo.toml's rust-version: 1.89, the first stable Rust with the AVX-512 target
# features that the vector kernels' `multiversion` targets enable; 1.88 rejects them): the library
# and its dependencies checked with that toolchain, installed by rustup where missing.
MSRV = $(shell sed -n 's/^rust-version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
test-msrv:
	rustup toolchain list | grep -q '^$(MSRV)-' || rustup toolchain install $(MSRV) --profile minimal
	CARGO_TARGET_DIR="$(BUILD)/msrv-target" $(CARGO) +$(MSRV) check --lib --locked

header:
	cbindgen --config cbindgen.toml --crate era --output include/era.h

test-header:
	cbindgen --config cbindgen.toml --crate era --verify --output include/era.h

decls:
	$(PYTHON) scripts/gen_decls.py

test-decls:
	$(PYTHON) scripts/gen_decls.py --check

# The Julia package checked statically (no Julia runtime: parsing, ccall signatures, struct
# layouts, drift, Project.toml), then the checker's own tests.
test-julia: $(PY)
	$(PIP) install --quiet tree-sitter tree-sitter-julia pytest
	"$(PY)" scripts/check_julia.py
	"$(PY)" -m pytest bindings/julia/tests -q

test-cmake: build
	bash scripts/test-install.sh "$(BUILD)/cmake" "$(VERSION)" $(CMAKE_FLAGS)

# ---------------------------------------------------------------- Python: era_jax and the SAC example
# The larger pytest suites run in two worker processes (pytest-xdist), a test file per worker at a
# time (files hold module-scoped fixtures and the gloo tests pick free ports); PYTEST_PARALLEL=
# (empty) runs them in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile
$(PY):
	$(PYTHON) -m venv "$(VENV)"
	$(PIP) install --quiet --upgrade pip

# The build dependencies go into the venv first, so that repeated installs reuse
# them (--no-build-isolation) instead of fetching jaxlib every time.
jax-install: $(PY)
	$(PIP) install --quiet "scikit-build-core>=0.10" "jax>=0.4.31" numpy pytest pytest-xdist==3.8.0 mpmath \
	    sbx-rl==0.28.0 "gymnasium[mujoco]==1.4.0" mujoco==4.0.0
	$(PIP) install --quiet --no-build-isolation ./bindings/jax

test-jax: jax-install
	cd / && "$(PY)" -c "import era_jax; print('era_jax', era_jax.__version__)"
	"$(PY)" -m pytest bindings/jax/tests $(PYTEST_PARALLEL) -q --durations=10

example-deps: jax-install
	$(PIP) install --quiet -r examples/jax/requirements.txt

test-examples: example-deps
	"$(PY)" -m pytest examples/jax $(PYTEST_PARALLEL) -q --durations=10

demo-sac: example-deps
	"$(PY)" examples/jax/sac_era.py demo --out runs/demo

sac-compare: example-deps
	PYTHON="$(PY)" bash examples/jax/compare.sh

sac-compare-paper: example-deps
	PYTHON="$(PY)" bash examples/jax/compare.sh --preset paper

PPO_STEPS ?= 499712
ppo-compare: example-deps
	"$(PY)" examples/jax/ppo_tools.py compare --steps $(PPO_STEPS) --tune-steps 98304 --out examples/jax/ppo_results

# Wheels (bindings/jax/wheel.sh): a self-contained era_jax wheel in dist/ (the CPU build of the
# native library inside, repaired by auditwheel), and its tests from a fresh venv whose PATH has
# no cargo or cmake.
wheel: $(PY)
	PYTHON="$(PY)" BUILD="$(BUILD)" bash bindings/jax/wheel.sh build

test-wheel: wheel
	PYTHON="$(PYTHON)" BUILD="$(BUILD)" bash bindings/jax/wheel.sh test

# The CUDA variant (dist/cuda/): era's CUDA kernels and era_jax's CUDA handlers inside, nvcc from
# the pinned PyPI wheels; its test runs the CPU tests where no GPU is usable.
wheel-cuda: $(PY)
	VARIANT=cuda PYTHON="$(PY)" BUILD="$(BUILD)" bash bindings/jax/wheel.sh build

test-wheel-cuda: wheel-cuda
	VARIANT=cuda PYTHON="$(PYTHON)" BUILD="$(BUILD)" bash bindings/jax/wheel.sh test

bench:
	$(CARGO) bench --bench table

bench-jax: jax-install
	"$(PY)" bindings/jax/bench.py

bench-sac: example-deps
	"$(PY)" examples/jax/sac_era.py bench

# era_torch: torch (the default PyPI wheel), the build dependencies and matplotlib (the GRPO
# example's plot) into the venv first;
# built against that torch, with its C++ CPU kernels required (ERA_TORCH_CPU_OPS=ON).
# SB3 and SBX (docs/sb3.md; sbx-rl 0.28.0 holds jax below 0.12) are installed with torch and jax.
# The LLM-RL frameworks the integrations are tested against (docs/llm-rl.md): verl 0.9.1 without its
# training stack (--no-deps, then what its policy losses and FSDP engine import on CPU), TRL 1.16.0
# with the transformers both accept, and verl 0.7.1 (the legacy actor) beside them in build/verl-0.7.1.
VERL_IMPORT_DEPS = "ray==2.60.0" "tensordict==0.10.0" "omegaconf==2.3.0" "codetiming==1.4.0" "orjson==3.13.0" \
    "datasets==5.2.0" "peft==0.21.2" "accelerate==1.16.0" "pillow==13.0.0"
LLM_RL_DEPS = "transformers==5.10.4" "trl==1.16.0" $(VERL_IMPORT_DEPS)

torch-install: $(PY)
	$(PIP) install --quiet "scikit-build-core>=0.10" torch numpy pytest pytest-xdist==3.8.0 matplotlib==3.11.2 \
	    stable-baselines3==2.9.2 "gymnasium[mujoco]==1.4.0" mujoco==4.0.0 mnist1d==0.0.2.post1 scikit-learn==1.9.1
	ERA_TORCH_CPU_OPS=ON $(PIP) install --quiet --no-build-isolation ./bindings/torch
	$(PIP) install --quiet $(LLM_RL_DEPS)
	$(PIP) install --quiet --no-deps "verl==0.9.1"
	[ -d "$(BUILD)/verl-0.7.1/verl" ] || $(PIP) install --quiet --no-deps --target "$(BUILD)/verl-0.7.1" "verl==0.7.1"

# The tests with the C++ CPU kernels (which must be there), then again with the ops' Python
# implementations only (ERA_TORCH_CPU_KERNELS=0; the LLM-RL integrations use the token ops, which
# have no C++ kernels, so they run once).
test-torch: torch-install jax-install
	cd / && "$(PY)" -c "import era_torch; print('era_torch', era_torch.__version__, 'C++ CPU kernels:', era_torch.cpu_kernels())"
	ERA_TORCH_EXPECT_CPU_KERNELS=1 "$(PY)" -m pytest bindings/torch/tests examples/torch $(PYTEST_PARALLEL) -q --durations=10
	ERA_TORCH_CPU_KERNELS=0 "$(PY)" -m pytest bindings/torch/tests -q --ignore=bindings/torch/tests/test_verl.py \
	    --ignore=bindings/torch/tests/test_verl_legacy.py --ignore=bindings/torch/tests/test_trl.py \
	    --ignore=bindings/torch/tests/test_llm_rl_page.py --ignore=bindings/torch/tests/test_token_blocks.py

grpo-demo: torch-install
	"$(PY)" examples/torch/grpo_era.py demo

grpo-compare: torch-install
	"$(PY)" examples/torch/grpo_era.py compare
	"$(PY)" examples/torch/grpo_era.py report

# The softmax head on classifiers (examples/torch/classify_era.py, examples/torch/CLASSIFY_RESULTS.md):
# every arm for one seed on small data (under a minute), or the whole comparison (about 45 minutes).
classify-demo: torch-install
	"$(PY)" examples/torch/classify_era.py demo

classify-compare: torch-install
	"$(PY)" examples/torch/classify_era.py compare
	"$(PY)" examples/torch/classify_era.py report

bench-torch: torch-install
	"$(PY)" bindings/torch/bench.py

# The era_torch wheel (bindings/torch/wheel.sh): dist/torch/era_torch-*-manylinux_2_28_*.whl, built
# against the venv's torch (its C++ CPU kernels for that torch), and its tests that need only torch,
# numpy and pytest from a fresh venv whose PATH has no cargo or cmake (torch linked from the venv).
wheel-torch: torch-install
	PYTHON="$(PY)" BUILD="$(BUILD)" bash bindings/torch/wheel.sh build

test-wheel-torch: wheel-torch
	PYTHON="$(PYTHON)" BUILD="$(BUILD)" TORCH_PYTHON="$(PY)" bash bindings/torch/wheel.sh test

# ---------------------------------------------------------------- the API reference (docs/conf.py)
# Sphinx and myst-parser (pinned in docs/requirements.txt) over the installed era_jax and era_torch,
# include/era.h and docs/*.md, warnings as errors (a fresh build every time, so that none hides);
# then rustdoc's pages of the crate (warnings as errors) under build/docs/rust.
DOCS = $(BUILD)/docs
RUSTDOC_OUT = $${CARGO_TARGET_DIR:-target}/doc

docs: jax-install torch-install
	$(PIP) install --quiet -r docs/requirements.txt
	rm -rf "$(DOCS)" "$(BUILD)/docs-doctrees" "$(RUSTDOC_OUT)"
	"$(PY)" -m sphinx -E -W --keep-going -q -b html -d "$(BUILD)/docs-doctrees" docs "$(DOCS)"
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet
	cp -r "$(RUSTDOC_OUT)/." "$(DOCS)/rust/"
	@echo "docs: $(DOCS)/index.html"

test-docs: docs
	bash scripts/bootstrap.sh --docs
	"$(PY)" scripts/check_docs.py "$(DOCS)"
	"$(PY)" -m pytest tests/docs -q

# ---------------------------------------------------------------- C++ planners on MuJoCo (examples/mpc)
# scripts/mpc.sh installs MuJoCo (the mujoco-core wheel) and dm_control's models into the venv and
# builds the example against $(PREFIX); test-mpc skips, saying why, only if they cannot be installed.
MPC = PY="$(PY)" PREFIX="$(PREFIX)" BUILD="$(BUILD)" JOBS=$(JOBS) CMAKE_FLAGS="$(CMAKE_FLAGS)" bash scripts/mpc.sh

test-mpc: install $(PY)
	$(MPC) test

demo-mpc: install $(PY)
	$(MPC) demo

mpc-compare: install $(PY)
	$(MPC) compare

bench-mpc: install $(PY)
	$(MPC) bench

# ---------------------------------------------------------------- CUDA (docs/cuda.md)
CUDA = PYTHON="$(PY)" BUILD="$(BUILD)" PREFIX="$(PREFIX)" JOBS=$(JOBS) CMAKE_FLAGS="$(CMAKE_FLAGS)" bash scripts/cuda.sh

test-cuda: install jax-install torch-install example-deps
	$(CUDA) test

cuda-artifacts: $(PY)
	$(CUDA) artifacts

# ---------------------------------------------------------------- hardening
# Miri: the core math and the ABI layer's pointer handling. Not under Miri (too
# slow there, no unsafe code of their own): entropy_bounds (proptest),
# finite_differences, token_head, delta_json.
MIRI_TESTS = --lib --test capi --test capi_heads --test capi_fuzz_regressions --test worked_examples --test stress \
    --test robustness
TSAN_TARGET ?= $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_SECONDS ?= 600

HARDENING_STEPS = test-miri test-sanitize test-valgrind test-tsan fuzz-smoke
test-hardening:
	@MAKE="$(MAKE)" bash scripts/steps.sh "make test-hardening" $(HARDENING_STEPS)

test-miri:
	rustup component list --toolchain nightly --installed | grep -q '^miri' || \
	    rustup component add --toolchain nightly miri rust-src
	MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-deterministic-floats" $(CARGO) +nightly miri test $(MIRI_TESTS)

# The C tests built with clang's AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: install
	bash scripts/bootstrap.sh --hardening
	cmake -S tests/c -B "$(BUILD)/c-tests-asan" $(CMAKE_FLAGS) -DCMAKE_C_COMPILER=clang \
	    -DERA_C_TESTS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$(PREFIX)"
	cmake --build "$(BUILD)/c-tests-asan" --parallel $(JOBS)
	cd "$(BUILD)/c-tests-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

# The C tests under valgrind memcheck (ctest -T memcheck; options in tests/c/CMakeLists.txt).
test-valgrind: install
	bash scripts/bootstrap.sh --hardening
	cmake -S tests/c -B "$(BUILD)/c-tests" $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$(PREFIX)"
	cmake --build "$(BUILD)/c-tests" --parallel $(JOBS)
	cd "$(BUILD)/c-tests" && ctest -T memcheck --output-on-failure

# The concurrency stress test under ThreadSanitizer (std rebuilt instrumented).
test-tsan:
	rustup component list --toolchain nightly --installed | grep -q '^rust-src' || \
	    rustup component add --toolchain nightly rust-src
	CARGO_TARGET_DIR=target/tsan RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS=halt_on_error=1 \
	    $(CARGO) +nightly test -Zbuild-std --target $(TSAN_TARGET) --release --test stress

fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke:
	bash scripts/fuzz.sh 20

clean:
	rm -rf "$(BUILD)"

distclean: clean
	$(CARGO) clean
