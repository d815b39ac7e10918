# Set-up installs the CPU build of torch 2.13.0 when no torch is present (an unpinned torch would pull
# gigabytes of CUDA packages), then the project with its test extra. It reruns only when pyproject.toml
# changes (the stamp lives in the git-ignored cache folder).
PYTHON ?= python3
PYTEST_WORKERS ?= 2
STAMP := .cache/setup-$(notdir $(PYTHON)).stamp

.PHONY: setup test reproduce bench verify

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[test]"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

test: setup
	$(PYTHON) -m pytest tests -n $(PYTEST_WORKERS) -q

reproduce: setup
	$(PYTHON) -m pytest claims/ -n $(PYTEST_WORKERS) -q -rs

verify: setup
	$(PYTHON) -m seqclaims registry verify

bench: setup
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PYTHON) $$script || exit 1; done
