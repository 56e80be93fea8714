# `make run`: set up .venv and train the quickstart. `make test`: set up and run the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Two workers: the SLURM and Ray tests run in one, first, while the other runs the rest
# (tests/conftest.py makes the units); more workers would not shorten the SLURM and Ray unit.
PYTEST ?= -q -n 2 --dist loadgroup --no-loadscope-reorder

.PHONY: run test test-fast slurm-up slurm-down lint docs clean

run: $(STAMP)
	$(VENV)/bin/reslab train configs/quickstart.yaml

test: $(STAMP) slurm-up
	$(PY) -m pytest $(PYTEST)

# Everything but the real-SLURM and Ray tests (no root or apt needed; a few minutes).
test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST) -m "not slurm and not ray"

# constraints.txt pins the versions tested together; pyproject keeps open ranges for users.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The local two-node SLURM cluster the `slurm` tests use, and shellcheck for the job scripts
# they submit (needs root and apt).
slurm-up:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then bash slurm/local-cluster.sh up; \
	  command -v shellcheck >/dev/null || apt-get install -y -qq shellcheck >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; }; \
	else echo "not root or no apt: the slurm tests will report the cluster missing"; fi

slurm-down:
	bash slurm/local-cluster.sh down

# ruff, and import-linter's layers contract (pyproject.toml): imports point down.
lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests
	$(VENV)/bin/lint-imports

# The documentation site (mkdocs.yml, docs/) into site/: a broken link, a missing page or anchor fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site .pytest_cache
