# Front door. `make demo` runs hello-numpy; `make test` builds and runs every test.
PY     ?= /usr/bin/python3
BUILD  ?= build
JOBS   ?= $(shell nproc)
EMBER  := $(CURDIR)/$(BUILD)/apps/ember/ember
export EMBER_BIN := $(EMBER)
export PYTHONPATH := $(CURDIR)/python

.PHONY: deps configure build test test-cpp test-python demo demo-pt demo-cpp bench bench-round bench-model clean

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

clean:
	rm -rf $(BUILD)
