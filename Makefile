# Two commands a newcomer needs:  `make demo` (the finance sync against the embedded emulator)
# and `make test` (the suite). Both bootstrap .venv from a bare python3 with the committed lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test soak lint bench emulator lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import airflow_provider_cloudelements, airflow" 
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The model-based test (tests/model) for SOAK_SECONDS seconds: prints steps run and violations found
# (the full log goes to SOAK_LOG).
SOAK_SECONDS ?= 600
SOAK_LOG ?= /tmp/cloudelements-soak.log
soak: $(STAMP)
	@CE_SOAK_SECONDS=$(SOAK_SECONDS) CE_SOAK_REPORT=$(SOAK_LOG).report $(PY) -m pytest -q -p no:cacheprovider \
		-s tests/model/test_soak.py > $(SOAK_LOG) 2>&1; rc=$$?; cat $(SOAK_LOG).report 2>/dev/null \
		|| tail -n 30 $(SOAK_LOG); echo "full log: $(SOAK_LOG)"; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check airflow_provider_cloudelements tests dags_examples scripts benchmarks
	$(VENV)/bin/mypy airflow_provider_cloudelements

# Benchmarks (benchmarks/RESULTS.md): adds the baselines' dependencies (dlt) to the same venv.
bench: $(STAMP)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev,bench]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) benchmarks/run.py $(BENCH_ARGS)

emulator: $(STAMP)
	$(VENV)/bin/cloudelements-emulator --help

# Regenerate the lock from the current environment (after changing dependencies).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v "^-e" > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
