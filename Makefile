# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench mutate clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Strict editable mode (so mypy sees the real package layout) links files at
# install time: the package folders are prerequisites, since adding a module
# changes their modification time and must re-link.
PKG_DIRS := middleware plugins plugins/builtin

$(STAMP): $(PY) pyproject.toml $(PKG_DIRS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]" --config-settings editable_mode=strict
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seawall demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy -p seawall
	$(VENV)/bin/mypy tests/typing

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck pytest

# Every benchmark (about 8 minutes on 2 cores); writes benchmarks/RESULTS.md.
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
