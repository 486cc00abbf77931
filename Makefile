# era: developer commands (the README's `make demo` and `make test` live here).
#
#   make build        cargo build --release through CMake (build/cmake)
#   make install      install headers, libraries, CMake package and era.pc into $(PREFIX)
#   make examples     install, then build and run examples/c and examples/cpp against $(PREFIX)
#   make demo         bootstrap + examples + demo-sac (the README's first command)
#   make demo-sac     a few minutes of SAC and SAC-ERA on HalfCheetah-v5, then a table
#   make sac-compare  the full SAC vs SAC-ERA comparison of examples/jax/RESULTS.md (its longest run logged 89 minutes)
#   make test         bootstrap + test-rust + test-header + test-cmake + test-jax + test-examples
#                     (the README's second command)
#   make test-jax     pip install ./bindings/jax into .venv, then pytest bindings/jax/tests
#   make test-examples  the SAC example's tests (examples/jax)
#   make header       regenerate include/era.h with cbindgen
#   make test-hardening   Miri, ASan+UBSan and valgrind C tests, ThreadSanitizer stress, fuzz smoke
#   make fuzz         every fuzz target for FUZZ_SECONDS (default 600) each
#   make test-cmake   install into a fresh temporary prefix and build/run every consumer against it
#   make clean        remove $(BUILD) (cargo's target/ stays; `make distclean` removes it too)

PREFIX ?= $(CURDIR)/build/prefix
BUILD ?= $(CURDIR)/build
CMAKE ?= cmake
CTEST ?= ctest
CARGO ?= cargo
CBINDGEN ?= cbindgen
ERA_CARGO_FLAGS ?=
CMAKE_BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# Extra arguments for every `cmake` configure step, e.g. CMAKE_FLAGS="-G Ninja".
CMAKE_FLAGS ?=

# The crate version, from Cargo.toml.
VERSION = $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml 2>/dev/null | head -n 1)

# The CMake project runs $CARGO.
export CARGO
MAKEFLAGS += --no-print-directory

.PHONY: all bootstrap build install examples demo test test-rust test-header test-cmake test-cmake-in \
        jax-install test-jax bench-jax example-deps demo-sac sac-compare bench-sac test-examples \
        header bench test-hardening test-miri test-sanitize test-valgrind test-tsan fuzz fuzz-smoke \
        clean distclean

all: build

build:
	$(CMAKE) -S . -B "$(BUILD)/cmake" $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) \
	    -DCMAKE_INSTALL_PREFIX="$(PREFIX)" -DERA_CARGO_FLAGS="$(ERA_CARGO_FLAGS)"
	$(CMAKE) --build "$(BUILD)/cmake" --parallel $(JOBS)

install: build
	$(CMAKE) --install "$(BUILD)/cmake" --prefix "$(PREFIX)"

# $(call build-example,LANGUAGE,PREFIX,BUILD-ROOT): configure, build and run examples/LANGUAGE.
define build-example
	$(CMAKE) -S examples/$(1) -B "$(3)/examples-$(1)" $(CMAKE_FLAGS) -U era_DIR \
	    -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) -DCMAKE_PREFIX_PATH="$(2)"
	$(CMAKE) --build "$(3)/examples-$(1)" --parallel $(JOBS)
	"$(3)/examples-$(1)/example"
endef

examples: install
	$(call build-example,c,$(PREFIX),$(BUILD))
	$(call build-example,cpp,$(PREFIX),$(BUILD))

# Installs what is missing (system packages, a pinned cbindgen); quick when all is there.
bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(MAKE) --no-print-directory examples demo-sac

test: bootstrap
	$(MAKE) --no-print-directory test-rust test-header test-cmake test-jax test-examples

# Debug build: overflow checks and ndarray's debug assertions are on.
test-rust:
	$(CARGO) test

header:
	$(CBINDGEN) --config cbindgen.toml --crate era --output include/era.h

# ---------------------------------------------------------------- JAX binding
# A virtual environment in .venv with the era_jax package built from this checkout.
VENV ?= $(CURDIR)/.venv
PYTHON ?= python3
JAX_PIP ?= $(VENV)/bin/pip

$(VENV)/bin/python:
	$(PYTHON) -m venv "$(VENV)"
	$(JAX_PIP) install --quiet --upgrade pip

# The build dependencies go into the venv first, so that repeated installs
# reuse them (--no-build-isolation) instead of fetching jaxlib every time.
jax-install: $(VENV)/bin/python
	$(JAX_PIP) install --quiet "scikit-build-core>=0.10" "jax>=0.4.31" numpy pytest
	$(JAX_PIP) install --quiet --no-build-isolation ./bindings/jax

test-jax: jax-install
	cd / && "$(VENV)/bin/python" -c "import era_jax; print('era_jax', era_jax.__version__)"
	"$(VENV)/bin/python" -m pytest bindings/jax/tests -q

bench-jax: jax-install
	"$(VENV)/bin/python" bindings/jax/bench.py

# ---------------------------------------------------------------- SAC / SAC-ERA example
SAC = "$(VENV)/bin/python" examples/jax/sac_era.py
SAC_RESULTS ?= examples/jax/results

example-deps: jax-install
	$(JAX_PIP) install --quiet -r examples/jax/requirements.txt

demo-sac: example-deps
	$(SAC) demo --out runs/demo

test-examples: example-deps
	"$(VENV)/bin/python" -m pytest examples/jax -q

# Two workers (one core each): SAC on one, SAC-ERA on the other; HalfCheetah-v5 for
# 100k steps, then Hopper-v5 for 30k, five seeds each; then the table and the plot.
sac-compare: example-deps
	@mkdir -p "$(SAC_RESULTS)"
	pids=""; for agent in sac sac-era; do \
	    ( $(SAC) train --agent $$agent --task HalfCheetah-v5 --seeds 0 1 2 3 4 --steps 100000 --threads 1 \
	          --out "$(SAC_RESULTS)" --no-progress && \
	      $(SAC) train --agent $$agent --task Hopper-v5 --seeds 0 1 2 3 4 --steps 30000 --threads 1 \
	          --out "$(SAC_RESULTS)" --no-progress && \
	      if [ $$agent = sac-era ]; then \
	          $(SAC) train --agent sac-era --delta fixed --task Hopper-v5 --seeds 0 1 2 3 4 --steps 30000 \
	              --threads 1 --out "$(SAC_RESULTS)" --no-progress; fi ) & pids="$$pids $$!"; \
	done; for p in $$pids; do wait $$p || exit 1; done
	$(SAC) report --runs "$(SAC_RESULTS)"
	$(SAC) plot --runs "$(SAC_RESULTS)" --png examples/jax/sac_era.png

bench-sac: example-deps
	$(SAC) bench

# The committed header must match what cbindgen generates from src/.
test-header:
	$(CBINDGEN) --config cbindgen.toml --crate era --verify --output include/era.h

# Installs into a fresh temporary prefix (then moves it: the package must be relocatable) and
# builds every consumer against it. On failure the scratch directory is kept for inspection.
test-cmake:
	@scratch=$$(mktemp -d "$${TMPDIR:-/tmp}/era-test-cmake.XXXXXX") && \
	echo "test-cmake: scratch directory $$scratch" && \
	$(MAKE) --no-print-directory test-cmake-in SCRATCH="$$scratch" && \
	rm -rf "$$scratch" && echo "test-cmake: all passed"

test-cmake-in: build
	@test -n "$(SCRATCH)" || { echo "test-cmake-in is internal: run make test-cmake" >&2; exit 2; }
	$(CMAKE) --install "$(BUILD)/cmake" --prefix "$(SCRATCH)/staged"
	mv "$(SCRATCH)/staged" "$(SCRATCH)/prefix"
	sh cmake/check-install.sh "$(SCRATCH)/prefix" "$(VERSION)"
	# the find_package consumer: era::era, era::static, era.hpp, pkg-config
	$(CMAKE) -S tests/cmake-project -B "$(SCRATCH)/consumer" $(CMAKE_FLAGS) \
	    -DCMAKE_PREFIX_PATH="$(SCRATCH)/prefix"
	$(CMAKE) --build "$(SCRATCH)/consumer" --parallel $(JOBS)
	cd "$(SCRATCH)/consumer" && $(CTEST) --output-on-failure
	sh cmake/check-install.sh "$(SCRATCH)/prefix" "$(VERSION)" "$(SCRATCH)/consumer"
	# the C tests (a standalone CMake project)
	@if [ -f tests/c/CMakeLists.txt ]; then \
	    set -x && \
	    $(CMAKE) -S tests/c -B "$(SCRATCH)/c-tests" $(CMAKE_FLAGS) -DCMAKE_PREFIX_PATH="$(SCRATCH)/prefix" && \
	    $(CMAKE) --build "$(SCRATCH)/c-tests" --parallel $(JOBS) && \
	    cd "$(SCRATCH)/c-tests" && $(CTEST) --output-on-failure; \
	else \
	    echo "test-cmake: tests/c/CMakeLists.txt not found, skipping the C tests"; \
	fi
	$(call build-example,c,$(SCRATCH)/prefix,$(SCRATCH))
	$(call build-example,cpp,$(SCRATCH)/prefix,$(SCRATCH))

# ---------------------------------------------------------------- hardening
# Miri: the core math and the ABI layer's pointer handling. Not under Miri (too
# slow there, no unsafe code of their own): entropy_bounds (proptest),
# finite_differences, token_head, delta_json.
MIRI_TESTS = --lib --test capi --test worked_examples --test stress --test robustness
NIGHTLY ?= +nightly

test-hardening: test-miri test-sanitize test-valgrind test-tsan fuzz-smoke

test-miri:
	rustup component list --toolchain nightly --installed | grep -q '^miri' || \
	    rustup component add --toolchain nightly miri rust-src
	MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-deterministic-floats" $(CARGO) $(NIGHTLY) miri test $(MIRI_TESTS)

# The C tests built with clang's AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: install
	bash scripts/bootstrap.sh --hardening
	$(CMAKE) -S tests/c -B "$(BUILD)/c-tests-asan" $(CMAKE_FLAGS) -DCMAKE_C_COMPILER=clang \
	    -DERA_C_TESTS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$(PREFIX)"
	$(CMAKE) --build "$(BUILD)/c-tests-asan" --parallel $(JOBS)
	cd "$(BUILD)/c-tests-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST) --output-on-failure

# The C tests under valgrind memcheck (errors and definite leaks fail the run; the
# thread pool's threads live as long as the process, so their stacks show up as
# "possibly lost" and are not reported).
test-valgrind: install
	command -v valgrind >/dev/null 2>&1 || bash scripts/bootstrap.sh --hardening
	$(CMAKE) -S tests/c -B "$(BUILD)/c-tests" $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$(PREFIX)"
	$(CMAKE) --build "$(BUILD)/c-tests" --parallel $(JOBS)
	@set -e; for t in basics gaussian softmax token json errors; do \
	    log="$(BUILD)/c-tests/valgrind-$$t.log"; \
	    valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no \
	        "$(BUILD)/c-tests/test_$$t" >"$$log" 2>&1 || { cat "$$log"; echo "valgrind: test_$$t FAILED"; exit 1; }; \
	    echo "valgrind: test_$$t: $$(grep -v '^==' "$$log" | tail -n 1)"; \
	done

# The concurrency stress test under ThreadSanitizer (std rebuilt instrumented).
TSAN_TARGET ?= $(shell rustc -vV | sed -n 's/^host: //p')
test-tsan:
	rustup component list --toolchain nightly --installed | grep -q '^rust-src' || \
	    rustup component add --toolchain nightly rust-src
	CARGO_TARGET_DIR=target/tsan RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS=halt_on_error=1 \
	    $(CARGO) $(NIGHTLY) test -Zbuild-std --target $(TSAN_TARGET) --release --test stress

bench:
	$(CARGO) bench --bench table

FUZZ_SECONDS ?= 600
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke:
	bash scripts/fuzz.sh 20

clean:
	rm -rf "$(BUILD)"

distclean: clean
	$(CARGO) clean
