# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest fuzz bench mutate clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Two installs. The demo needs seawall and its `demo` extra (rich) only: a
# regular install, re-done when a source file changes; no editable link, so no
# setuptools banner. Everything else needs the `test` extra (pytest, ruff, mypy,
# the SDKs, matplotlib, ...) in strict editable mode, the only one mypy can
# follow. Strict mode links files at install time: the package folders are
# prerequisites, since adding a module changes their modification time and
# must re-link.
PKG_DIRS := middleware middleware/_path middleware/cli middleware/fleet middleware/llm middleware/testing plugins plugins/builtin
PKG_FILES := $(shell find $(PKG_DIRS) -name '*.py')
DEMO_STAMP := $(VENV)/.demo-installed

$(STAMP): $(PY) pyproject.toml $(PKG_DIRS)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]" --config-settings editable_mode=strict
	touch $(STAMP)

# After `make test` the full install serves the demo too (a regular install
# over it would take mypy's view of the package away).
$(DEMO_STAMP): $(PY) pyproject.toml $(PKG_FILES)
	@if [ -f $(STAMP) ]; then \
		$(MAKE) --no-print-directory $(STAMP); \
	else \
		echo "installing seawall[demo] into $(VENV) (about 30 s)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check ".[demo]"; \
	fi
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/seawall demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy -p seawall
	$(VENV)/bin/mypy tests/typing

# The files whose code depends most on the running loop (timers, the watchdog, the lean
# paths, held calls, the body pump, background tasks) run a second time on uvloop,
# what uvicorn[standard] runs: about 35 s. The whole suite passes on uvloop too
# (`SEAWALL_TEST_LOOP=uvloop .venv/bin/pytest --aiohttp-loop=uvloop`, about 8 minutes).
UVLOOP_TESTS := tests/test_watchdog.py tests/test_watchdog_nesting.py tests/test_watchdog_rules.py \
	tests/test_call_lean.py tests/test_lean_path.py tests/test_breaker_hold.py \
	tests/test_breaker_recovery.py tests/test_deadline.py tests/test_cooldown.py \
	tests/test_spare_turns.py tests/test_asgi.py tests/test_blocks.py tests/test_httpx_lean.py \
	tests/test_call_replay.py tests/test_streams_left_early.py tests/test_fleet.py

pytest: $(STAMP)
	$(VENV)/bin/pytest
	SEAWALL_TEST_LOOP=uvloop $(VENV)/bin/pytest -q -p no:cacheprovider --aiohttp-loop=uvloop $(UVLOOP_TESTS)

test: lint typecheck pytest

# The property tests with fresh random examples on every run (make test draws the same ones).
fuzz: $(STAMP)
	SEAWALL_HYPOTHESIS=explore $(VENV)/bin/pytest -q -p no:cacheprovider tests/test_fuzz_config.py tests/test_fuzz_parsers.py \
		tests/test_early_probe.py::test_any_mix_of_demand_answers_and_429s_keeps_the_pace_bounded

# Every benchmark (about 15 minutes on 2 cores: 824 s and 889 s on 2026-12-02); writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Mutation testing of the mechanism modules (sized for ~15 minutes on 2 idle cores;
# not part of `make test`). Mutants run in temporary copies, never in this tree.
# Last line: `mutation: K/N killed`. Survivors we accept: tests/README.md.
MUTATE_STAMP := $(VENV)/.mutate-installed

$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,mutate]" --config-settings editable_mode=strict
	touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	$(PY) tools/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
