# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The browser the demo app's test drives (Debian's package; Playwright never downloads one here).
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint bench install clean

$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hvl demo --output-dir demo_output

# One intra-op thread per test worker: two workers share two cores.
test: $(STAMP) $(CHROMIUM)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/ruff check src tests examples benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_coattention.py

clean:
	rm -rf $(VENV) demo_output
