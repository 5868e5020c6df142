# Two commands do everything on a fresh machine:
#   make demo   - set up .venv, then run the memory-capacity experiment on synthetic data
#   make test   - set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch (an unpinned "torch" pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
# The demo needs the package alone; the tests also need the dev tools and the
# optional extras they exercise (Ray for the cluster backend).
TEST_EXTRAS ?= dev,ray
BIN := $(VENV)/bin
STAMP := $(VENV)/.rnnlab-installed
TEST_STAMP := $(VENV)/.rnnlab-test-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint bench browser cross clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(TEST_EXTRAS)]"
	touch $(TEST_STAMP)

# Headless Chromium for the report's browser test; installed from Debian's
# packages when missing (CI runs as root on a fresh machine).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install chromium; the browser test will fail under CI=true"; }

# An aarch64 cross compiler and qemu-user, so the test suite builds and runs the
# kernel's NEON variant (tests/test_engine_variants.py); installed like chromium.
cross:
	@command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 || \
	  { echo "installing gcc-aarch64-linux-gnu and qemu-user for the NEON kernel test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      gcc-aarch64-linux-gnu qemu-user >/dev/null) \
	    || echo "could not install them; the NEON kernel test will fail under CI=true"; }

demo: setup
	$(BIN)/rnnlab memory --out $(DEMO_OUT)

test: $(TEST_STAMP) $(if $(CI),browser cross)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
