# The project's commands. `make run` and `make test` are the two a newcomer needs; each
# installs what is missing (scripts/install-deps) and builds first.
#
#   make build   install dependencies, configure and build the release preset (build/release)
#   make run     build, then scripts/run-local
#   make test    build, then every test through ctest
#   make bench   build, then the benchmarks
#   make fuzz    build the fuzz preset with clang and run each fuzzer FUZZ_SECONDS (default 60)
#   make asan    build and test with AddressSanitizer and UBSan (build/asan)
#   make format  clang-format the C++ sources in place
#   make docs    regenerate docs/rules.md from the rule catalogue
#   make console-ui  build only the console UI (web/console/dist; the build target builds it too)
#   make clean   remove build/

SHELL := /bin/bash
FUZZ_SECONDS ?= 60
CAPCTL := build/release/capctl
BENCH := build/release/cap_engine_bench
FORMAT_DIRS := src include tests bench fuzz

.DEFAULT_GOAL := build
.PHONY: build deps run test bench fuzz asan format docs clean console-ui

deps:
	scripts/install-deps

build: deps
	cmake --preset release
	cmake --build --preset release

console-ui: deps
	cmake --preset release
	cmake --build --preset release --target console-ui

run: build
	scripts/run-local

test: build
	ctest --preset release --output-on-failure -j2

bench: build
	scripts/install-bench-deps
	@if [ -x $(BENCH) ]; then \
	  echo "$(BENCH) --benchmark_counters_tabular=true"; \
	  $(BENCH) --benchmark_counters_tabular=true; \
	else \
	  echo "make bench: $(BENCH) was not built (no sources in bench/ yet, or Google Benchmark missing)"; \
	fi
	python3 bench/gold_master_start.py
	python3 bench/ai_agent_steps.py
	python3 bench/mcp_streams.py
	bench/side-by-side/run

fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz

asan: deps
	cmake --preset asan
	cmake --build --preset asan
	ctest --preset asan --output-on-failure -j2

format:
	find $(FORMAT_DIRS) -type f \( -name '*.cpp' -o -name '*.cc' -o -name '*.h' -o -name '*.hpp' \) \
	  -print0 2>/dev/null | xargs -0 -r clang-format -i

docs: build
	$(CAPCTL) rules --markdown > docs/rules.md.tmp
	mv docs/rules.md.tmp docs/rules.md

clean:
	rm -rf build
