# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

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

clean:
	rm -rf $(VENV) build *.egg-info
