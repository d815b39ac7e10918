# Set-up installs the project with the versions in constraints.txt (the lock the tests and the ledger were
# made with). When no torch is present it installs the CPU build torch==2.13.0 first (an unpinned torch
# would pull gigabytes of CUDA packages); an existing torch is kept, whatever its build. It reruns only when
# pyproject.toml or constraints.txt changes (the stamp lives in the git-ignored cache folder).
PYTHON ?= python3
PYTEST_WORKERS ?= 2
STAMP := .cache/setup-$(notdir $(PYTHON)).stamp
KEPT_TORCH := .cache/constraints-without-torch.txt

.PHONY: setup test reproduce bench verify check lock

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@mkdir -p $(dir $(STAMP))
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	@grep -v -E '^(torch|sympy|mpmath|networkx)==' constraints.txt > $(KEPT_TORCH)  # torch's own pins stay torch's
	$(PYTHON) -m pip install -q -c $(KEPT_TORCH) -e ".[test]"
	@touch $(STAMP)

test: setup
	$(PYTHON) -m pytest tests -n $(PYTEST_WORKERS) -q

reproduce: setup
	$(PYTHON) -m pytest claims/ -n $(PYTEST_WORKERS) -q -rs

verify: setup
	$(PYTHON) -m seqclaims registry verify

check: setup
	$(PYTHON) -m seqclaims check claims/

bench: setup
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PYTHON) $$script || exit 1; done

# Re-resolve the lock in a new, empty virtual environment (after a deliberate upgrade).
lock:
	rm -rf .cache/lockenv && $(PYTHON) -m venv .cache/lockenv
	.cache/lockenv/bin/pip install -q "torch==2.13.0"
	.cache/lockenv/bin/pip install -q -e ".[test]"
	@{ sed -n '1,3p' constraints.txt; .cache/lockenv/bin/pip freeze --exclude-editable | grep -v '^torch=='; \
	   echo "torch==2.13.0"; } > constraints.txt.new && mv constraints.txt.new constraints.txt
