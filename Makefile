# nerfpipe set-up and the two entry points (see README.md).
#   make demo   set up .venv, build the extension, run the whole workflow on config/config.yaml
#   make test   set up .venv, build the extension, run the test suite
# On a CUDA machine choose the torch build, e.g.  make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
CORES       ?= all
CONFIG      ?= config/config.yaml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.nerfpipe-installed

.PHONY: setup demo test lint bench clean-results system-test-deps

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel

# Re-run the install whenever the dependency pins or the extension sources change.
$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard ext/csrc/*)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet pybind11==3.1.0
	@echo "building nerfpipe and its extension (about a minute)"
	@start=$$(date +%s); \
	  $(BIN)/python -m pip install --quiet --no-build-isolation -e ".[test]" && \
	  echo "extension build + install: $$(( $$(date +%s) - start )) s"
	$(BIN)/python -c "import nerfpipe.sampling as s; ok, why = s.extension_status(); print('extension:', 'built' if ok else 'NOT built: ' + why); raise SystemExit(0 if ok else 1)"
	touch $(STAMP)

demo: setup
	@start=$$(date +%s); \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --workflow-profile workflow/profiles/local && \
	  echo "workflow finished in $$(( $$(date +%s) - start )) s"
	$(BIN)/nerfpipe readme --report results/report/report.md --readme README.md
	@echo "report: $(CURDIR)/results/report/report.md (also report.html, report.csv, figures/)"

# Browser and ffmpeg-free system pieces the tests use; installed only where we are root with apt.
system-test-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; \
	else echo "not root or no apt-get: browser test will be skipped"; fi

test: setup system-test-deps
	$(BIN)/ruff check nerfpipe tests bench setup.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check nerfpipe tests bench setup.py
	$(BIN)/snakemake --lint --configfile config/smoke.yaml

bench: setup
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/train_throughput.py

clean-results:
	rm -rf results .snakemake
