# era: developer commands (the README's `make demo` and `make test` live here).
#
#   make build        cargo build --release through CMake (build/cmake)
#   make install      install headers, libraries, CMake package and era.pc into $(PREFIX)
#   make examples     install, then build and run examples/c and examples/cpp against $(PREFIX)
#   make demo         = examples
#   make test         test-rust + test-header + test-cmake
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

.PHONY: all build install examples demo test test-rust test-header test-cmake test-cmake-in \
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

demo: examples

test: test-rust test-header test-cmake

test-rust:
	$(CARGO) test --release

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

clean:
	rm -rf "$(BUILD)"

distclean: clean
	$(CARGO) clean
