# Two commands a newcomer needs:  `make demo` (the finance sync against the embedded emulator)
# and `make test` (the suite). Both bootstrap .venv from a bare python3 with the committed lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test soak lint bench emulator lock clean compat gcs-check docs

$(STAMP): pyproject.toml emulator/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev]" --editable ./emulator 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import airflow_provider_cloudelements, cloudelements_emulator, airflow" 
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

LINT_PATHS := airflow_provider_cloudelements emulator tests dags_examples scripts benchmarks
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy airflow_provider_cloudelements emulator/cloudelements_emulator

# Benchmarks (benchmarks/RESULTS.md): adds the baselines' dependencies (dlt) to the same venv.
bench: $(STAMP)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev,bench]" --editable ./emulator 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# Compatibility smoke (scripts/compat_smoke.py, docs/compatibility.md): import every module, the demo DAG
# with dag.test() and the connection test, on the oldest supported Airflow (its own venv under .venv/,
# pinned by constraints-airflow-<minor>.txt, this package installed --no-deps) and on the locked one.
COMPAT_AIRFLOW ?= 3.1.8
COMPAT_MINOR := $(basename $(COMPAT_AIRFLOW))
COMPAT_VENV := $(VENV)/compat-$(COMPAT_MINOR)
COMPAT_STAMP := $(COMPAT_VENV)/.installed-stamp

$(COMPAT_STAMP): $(STAMP) constraints-airflow-$(COMPAT_MINOR).txt pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(COMPAT_VENV)
	# the committed set as is (no resolver run: ~35 s instead of ~110 s), then `pip check` proves it holds
	# apache-airflow==$(COMPAT_AIRFLOW) and every runtime dependency of pyproject.toml at a compatible version
	$(COMPAT_VENV)/bin/python -m pip install --quiet --no-deps -r constraints-airflow-$(COMPAT_MINOR).txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(COMPAT_VENV)/bin/python -m pip install --quiet --no-deps --editable . --editable ./emulator 2>&1 | grep -v "is ignored: it is neither" || true
	$(COMPAT_VENV)/bin/python -m pip check
	$(COMPAT_VENV)/bin/python -c "import airflow; assert airflow.__version__ == '$(COMPAT_AIRFLOW)', airflow.__version__"
	touch $(COMPAT_STAMP)

# COMPAT_LOCKED=0 skips the second run on the locked Airflow (.ci/run: `make test` covers it already).
COMPAT_LOCKED ?= 1
compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python scripts/compat_smoke.py
	if [ "$(COMPAT_LOCKED)" != "0" ]; then $(PY) scripts/compat_smoke.py; fi

# The documentation site (mkdocs.yml): docs/ plus CHANGELOG.md, benchmarks/RESULTS.md and the example DAGs
# (scripts/mkdocs_hooks.py), into DOCS_SITE; strict: any warning (a broken link or anchor, a page missing
# from the nav) fails the build. Open $(DOCS_SITE)/index.html.
DOCS_SITE ?= site
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --clean --site-dir $(DOCS_SITE)

# Google Cloud Storage (the `gcs` extra, docs/storage.md): its own venv under .venv/ with the committed lock
# (which pins the Google stack, so the extra co-installs with it) plus a GCS API emulator for the test;
# runs tests/integration/test_gcs.py (landing to gs:// and the credential checks). `make test` skips it.
GCS_VENV := $(VENV)/gcs
GCS_STAMP := $(GCS_VENV)/.installed-stamp

$(GCS_STAMP): pyproject.toml emulator/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(GCS_VENV)
	$(GCS_VENV)/bin/python -m pip install --quiet --constraint constraints.txt --editable ".[dev,gcs]" --editable ./emulator gcp-storage-emulator 2>&1 | grep -v "is ignored: it is neither" || true
	$(GCS_VENV)/bin/python -m pip check
	$(GCS_VENV)/bin/python -c "import airflow.providers.google, gcsfs, gcp_storage_emulator"
	touch $(GCS_STAMP)

gcs-check: $(GCS_STAMP)
	GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false $(GCS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/integration/test_gcs.py

emulator: $(STAMP)
	$(VENV)/bin/cloudelements-emulator --help

# Regenerate the lock from the current environment (after changing dependencies).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v "^-e" > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
