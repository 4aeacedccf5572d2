# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first
# (idempotent: seconds once done). See README.md.
VENV := .venv
CONF ?= conf/local.yaml
# The demo's dates: synth.start_date of conf/local.yaml, plus synth.days - 1. Partitions up to
# DEMO_END - 4 days are final; the model trains on the first four, validates and tests on the next.
DEMO_START ?= 2026-10-01
DEMO_END ?= 2026-10-10
TRAIN_END ?= 2026-10-04
SCORE_DATE ?= 2026-10-10
PIPELINE := $(VENV)/bin/pipeline

.PHONY: env airflow-env demo test bench package clean

env:
	@bash .ci/bootstrap.sh

demo: env
	$(PIPELINE) generate --conf $(CONF)
	$(PIPELINE) truth --conf $(CONF)
	$(PIPELINE) build-samples --conf $(CONF) --start $(DEMO_START) --end $(DEMO_END)
	$(PIPELINE) train --conf $(CONF) --start $(DEMO_START) --end $(TRAIN_END) --model esmm
	$(PIPELINE) score --conf $(CONF) --date $(SCORE_DATE)
	$(PIPELINE) top-scores --conf $(CONF) --date $(SCORE_DATE) --k 10
	$(PIPELINE) report --conf $(CONF)

airflow-env:
	@bash .ci/airflow_env.sh

test: env airflow-env
	$(VENV)/bin/pytest -q -n 2

bench: env
	$(VENV)/bin/python bench/generate.py
	$(VENV)/bin/python bench/build_samples.py

# dist/mtrank-env.tar.gz (the dependencies, for spark-submit --archives; built once per set of
# pins and cached), dist/mtrank-<version>.zip (the code, for --py-files) and the wheel, then a
# check of both as an executor sees them. docs/deployment.md. PYTHON_PREFIX=/usr points the
# archive's python at the cluster's.
package: env
	@bash .ci/package.sh
	@bash .ci/check_package.sh

clean:
	rm -rf data reports
