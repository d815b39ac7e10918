# Set-up installs the project with the versions in constraints.txt (the lock the tests and the ledger were
# made with). When no torch is present it installs the CPU build torch==2.13.0 first (an unpinned torch
# would pull gigabytes of CUDA packages); an existing torch is kept, whatever its build. It reruns only when
# pyproject.toml or constraints.txt changes (the stamp lives in the git-ignored cache folder).
PYTHON ?= python3
PYTEST_WORKERS ?= 2
STAMP := .cache/setup-$(notdir $(PYTHON)).stamp
KEPT_TORCH := .cache/constraints-without-torch.txt

.PHONY: setup test reproduce bench verify check lock mutate

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
	.cache/lockenv/bin/pip install -q -e ".[test,mutate]"
	@{ sed -n '1,3p' constraints.txt; .cache/lockenv/bin/pip freeze --exclude-editable | grep -v '^torch=='; \
	   echo "torch==2.13.0"; } > constraints.txt.new && mv constraints.txt.new constraints.txt

# Mutation testing of the code that decides conclusions (mutmut; not part of every CI run; 20 to 30 minutes on
# one core): each mutant of the modules [tool.mutmut] names, restricted to MUTANTS (for methods/features.py the
# unit scoring: chance, the AUPRC engine, the bootstrap by sequence), against those of the tests [tool.mutmut]
# selects that reach it; then the share killed per module and every survivor (fails below 90%). mutants/ keeps
# the mutants and results; `make mutate MUTANTS=<name>` retests one mutant after a change of the tests.
UNIT_SCORING := random_auprc column_auprc _average_precision _thin_evidence _test_auprc
MUTANTS ?= seqclaims.core.verdicts.* seqclaims.methods.stats.* seqclaims.methods.weighted.* seqclaims.methods.composition.* \
	$(foreach name,$(UNIT_SCORING),seqclaims.methods.features.x_$(name)__mutmut_*)
MUTATE_WORKERS ?= 1

mutate: setup
	$(PYTHON) -m pip install -q -c $(KEPT_TORCH) -e ".[test,mutate]"
	SEQCLAIMS_CACHE=$(CURDIR)/.cache/seqclaims $(PYTHON) -c "from mutmut.__main__ import cli; cli()" \
		run --max-children $(MUTATE_WORKERS) $(foreach name,$(MUTANTS),'$(name)')
	$(PYTHON) scripts/mutation_score.py --min 0.9 $(foreach name,$(MUTANTS),'$(name)')
