# Front for the meson build. `make check` and `make demo` set everything up
# themselves on a fresh Debian 12 machine (as root), as the README says.
BUILD ?= build
# meson wraps the compiler in ccache or sccache when it finds one; build plainly.
export CC ?= gcc
ASAN_BUILD ?= build-asan
MESON_OPTS ?= --buildtype=debugoptimized -Dwerror=true

.PHONY: all deps build check unit integration asan demo bench fuzz clean

all: build

deps:
	@scripts/deps.sh check

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) $(MESON_OPTS) -Dstatic_wrapper=false -Db_sanitize=address,undefined -Db_lundef=false

asan-build: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Everything, with one summary line at the end ("N passed, N failed").
check: deps
	@scripts/check.sh

demo:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

# libFuzzer targets (fuzz/fuzz_*.c): FUZZ_SECONDS each (default 60).
fuzz:
	@scripts/deps.sh check
	@scripts/fuzz.sh

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/run.sh
	@bench/warm-zlib.sh
	@bench/remote.sh
	@bench/s3.sh
	@bench/microvm.sh
	@bench/route.sh
	@bench/load.sh
	@bench/audit.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
