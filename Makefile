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

# Until the planet twin exists: replay the embedded Azure conversation trace on one site.
run: build
	./$(BUILD)/infergrid sim --trace data/traces/AzureLLMInferenceTrace_conv.csv \
	  --model llama2-70b --gpu h100-80gb --tp 8 --replicas 8 --out out

test: build test-asan fuzz
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L fast

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERGRID_SANITIZE=ON -DINFERGRID_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit_tests
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
