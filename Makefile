# nerfpipe set-up and the two entry points (see README.md).
#   make demo   set up .venv, build the extension, run the whole workflow on config/config.yaml
#   make test   set up .venv, build the extension, run the test suite
# On a CUDA machine choose the torch build, e.g.  make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# Every package is installed at its tested version from constraints.txt (pip install -c); optional
# extras: make setup EXTRAS=test,tensorboard (or lpips: needs its weights on disk).

PYTHON      ?= python3
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
TORCH_SPEC  ?= torch==2.13.0
EXTRAS      ?= test
CORES       ?= all
CONFIG      ?= config/config.yaml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.nerfpipe-installed

.PHONY: setup demo test test-oldest lint bench clean-results system-test-deps

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel

# Re-run the install whenever the dependencies, their pins or the extension sources change.
$(STAMP): $(BIN)/python pyproject.toml $(CONSTRAINTS) setup.py ext/cuda_build.py $(wildcard ext/csrc/* ext/csrc/cuda/*)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) pybind11
	@echo "building nerfpipe and its extension (about a minute)"
	@start=$$(date +%s); \
	  $(BIN)/python -m pip install --quiet --no-build-isolation -c $(CONSTRAINTS) -e ".[$(EXTRAS)]" && \
	  echo "extension build + install: $$(( $$(date +%s) - start )) s"
	$(BIN)/python -c "import nerfpipe.ext_backend as b; ok, why = b.extension_status(); print('extension:', 'built' if ok else 'NOT built: ' + why); raise SystemExit(0 if ok else 1)"
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

# The suite against the oldest tested releases (constraints-oldest.txt in place of those pins), in a
# venv of its own: what the lower bounds of pyproject.toml promise. Not part of `make test`.
OLDEST_VENV ?= .venv-oldest
OLDEST_CONSTRAINTS := build/constraints-oldest-merged.txt
test-oldest:
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(OLDEST_VENV)/bin/python -m pip install --quiet $(TORCH_SPEC)
	mkdir -p build
	grep -v -E "^($$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' constraints-oldest.txt | paste -sd'|'))==" $(CONSTRAINTS) \
	  > $(OLDEST_CONSTRAINTS)
	grep -E "^[A-Za-z0-9_.-]+==" constraints-oldest.txt >> $(OLDEST_CONSTRAINTS)
	$(OLDEST_VENV)/bin/python -m pip install --quiet -c $(OLDEST_CONSTRAINTS) pybind11
	$(OLDEST_VENV)/bin/python -m pip install --quiet --no-build-isolation -c $(OLDEST_CONSTRAINTS) -e ".[test]"
	PATH="$(CURDIR)/$(OLDEST_VENV)/bin:$$PATH" $(OLDEST_VENV)/bin/python -m pytest $(PYTEST_ARGS) \
	  --deselect tests/test_packaging.py::test_the_pins_are_what_is_installed

lint: setup
	$(BIN)/ruff check nerfpipe tests bench setup.py
	$(BIN)/snakemake --lint --configfile config/smoke.yaml

bench: setup
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/train_throughput.py

clean-results:
	rm -rf results .snakemake

# The CUDA build of the extension, in a venv of its own: `make cuda-build` (no GPU needed). Not part of
# `make test`: PyPI's CUDA torch and its nvidia-* wheels are about 5 GB. It needs an nvcc whose CUDA major
# matches torch's (PyPI's torch==2.13.0 is built with CUDA 13.0). The build goes to build/cuda/lib, never
# into nerfpipe/ (where .venv's editable CPU build lives); tests/test_cuda_build.py imports and lists it.
# See README.md, "Building the CUDA extension".
CUDA_VENV       ?= .venv-cuda
CUDA_TORCH_SPEC ?= torch==2.13.0
CUDA_ARCH_LIST  ?= 7.5;8.0;8.6;9.0;10.0;12.0+PTX
CUDA_BUILD_DIR  ?= build/cuda
CUDA_BIN   := $(CUDA_VENV)/bin
CUDA_STAMP := $(CUDA_VENV)/.nerfpipe-cuda-installed
# pip without this machine's configuration: it adds a local wheel folder holding torch 2.13.0+cpu, which
# pip prefers to PyPI's CUDA build of 2.13.0 (a local version label sorts higher).
CUDA_PIP   := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(CUDA_BIN)/python -m pip

.PHONY: cuda-venv cuda-build

cuda-venv: $(CUDA_STAMP)

$(CUDA_STAMP):
	$(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_PIP) install --quiet --upgrade pip "setuptools>=77" wheel
	$(CUDA_PIP) install --quiet "$(CUDA_TORCH_SPEC)"
	$(CUDA_PIP) install --quiet -c $(CONSTRAINTS) pybind11 numpy
	$(CUDA_BIN)/python -c "import torch; v = torch.version.cuda; print('torch', torch.__version__, 'CUDA', v); raise SystemExit(0 if v else 'torch in $(CUDA_VENV) is CPU-only: set CUDA_TORCH_SPEC to a CUDA build')"
	touch $@

cuda-build: $(CUDA_STAMP)
	mkdir -p $(CUDA_BUILD_DIR)
	@hash=$$($(CUDA_BIN)/python ext/cuda_build.py sources-hash) && start=$$(date +%s) && \
	  echo "building the CUDA extension into $(CUDA_BUILD_DIR) (TORCH_CUDA_ARCH_LIST=$(CUDA_ARCH_LIST); log: $(CUDA_BUILD_DIR)/build.log)" && \
	  { TORCH_CUDA_ARCH_LIST="$(CUDA_ARCH_LIST)" MAX_JOBS=$$(nproc) PATH="$(CURDIR)/$(CUDA_BIN):$$PATH" \
	      $(CUDA_BIN)/python setup.py build_ext --build-lib $(CUDA_BUILD_DIR)/lib --build-temp $(CUDA_BUILD_DIR)/temp \
	      > $(CUDA_BUILD_DIR)/build.log 2>&1 || { tail -n 40 $(CUDA_BUILD_DIR)/build.log; exit 1; }; } && \
	  tail -n 3 $(CUDA_BUILD_DIR)/build.log && \
	  echo "CUDA extension build: $$(( $$(date +%s) - start )) s" && \
	  TORCH_CUDA_ARCH_LIST="$(CUDA_ARCH_LIST)" $(CUDA_BIN)/python ext/cuda_build.py record $(CUDA_BUILD_DIR) $$hash
