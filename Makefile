# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first
# (idempotent: seconds once done). See README.md.
VENV := .venv
CONF ?= conf/local.yaml
PIPELINE := $(VENV)/bin/pipeline

.PHONY: env demo test bench clean

env:
	@bash .ci/bootstrap.sh

demo: env
	$(PIPELINE) generate --conf $(CONF)
	$(PIPELINE) truth --conf $(CONF)

test: env
	$(VENV)/bin/pytest -q

bench: env
	$(VENV)/bin/python bench/generate.py

clean:
	rm -rf data reports
