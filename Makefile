# The two commands of the README. Everything else is plain CMake + Ninja.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= 2

.PHONY: deps build run test test-fast test-asan fuzz bench clean

deps:
	@bash scripts/install_deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The main job: the embedded planet (data/world/default.yaml) for 24 simulated hours; writes
# out/summary.json, CSV time series and out/report.html, and ends with the report's path.
run: build
	./$(BUILD)/infergrid sim

test: build test-asan fuzz
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L fast

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERGRID_SANITIZE=ON -DINFERGRID_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit_tests serve_tests
	cd $(ASAN_BUILD) && ctest --output-on-failure -L fast

# libFuzzer targets for every parser of outside input, run briefly.
fuzz: deps
	CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERGRID_FUZZ=ON -DINFERGRID_TESTS=OFF -DINFERGRID_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	bash scripts/run_fuzz.sh $(FUZZ_BUILD) $${FUZZ_SECONDS:-15}

bench: build
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) out
