# Front door. `make demo` runs hello-numpy; `make test` builds and runs every test;
# `make fuzz` runs every layer's fuzz targets (src/*/fuzz) for FUZZ_SECONDS each (docs/fuzzing.md).
PY     ?= /usr/bin/python3
BUILD  ?= build
JOBS   ?= $(shell nproc)
FUZZ_SECONDS ?= 60
EMBER  := $(CURDIR)/$(BUILD)/apps/ember/ember
export EMBER_BIN := $(EMBER)
export PYTHONPATH := $(CURDIR)/python

.PHONY: deps configure build test test-cpp test-python fuzz demo demo-pt demo-cpp bench bench-round bench-model bench-transport clean

deps:
	bash scripts/deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: configure
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600
	$(PY) -m pytest -q tests/python tests/integration

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-python: build
	$(PY) -m pytest -q tests/python

# libFuzzer targets built with clang in build-fuzz/ (separate from $(BUILD)).
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) bash scripts/fuzz.sh

demo: build
	cd examples/hello-numpy && $(PY) job.py

demo-pt: build
	cd examples/hello-pt && $(PY) job.py

demo-cpp: build
	cd examples/hello-cpp && $(PY) job.py

bench: bench-round bench-model

bench-round: build
	$(PY) bench/round_overhead.py

bench-model: build
	$(PY) bench/model_round.py

bench-large-model: build
	$(PY) bench/large_model.py

# 1 GiB over loopback: raw socket pair vs Ember connections (docs/benchmarks.md).
bench-transport: configure
	cmake --build $(BUILD) --target transport_bench -j$(JOBS)
	$(BUILD)/bench/transport_bench

clean:
	rm -rf $(BUILD)
