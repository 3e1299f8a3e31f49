# digits: `make serve` and `make test` do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test system-packages train bench bench-record lint clean finetune

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

serve: $(STAMP)  ## Serve the committed model on http://127.0.0.1:8000
	$(PY) -m server

system-packages:  ## Install what the tests need from the system (chromium, nginx, npm), if missing
	PYTHON=$(PYTHON) scripts/install-system-packages

test: system-packages $(STAMP)  ## Lint, type-check and run the whole test suite
	$(PY) -m ruff check model server client corrections train bench tests
	$(PY) -m mypy
	$(PY) -m pytest

train: $(STAMP)  ## Train the served CNN (ten digits and "not a digit") and write every file of model/
	$(PY) -m train --not-digit

bench: $(STAMP)  ## Replay the page's recorded traffic against the server: load, saturation, attacks, corrections
	$(PY) -m bench
	$(PY) -m bench --numbers --workers 2 --many 0 --ceiling-duration 0
	$(PY) -m bench --attack
	$(PY) -m bench.corrections

bench-record: $(STAMP)  ## Record what the page sends while digits and numbers are drawn on it, for make bench
	$(PY) -m bench.record

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

DATABASE_URL ?= sqlite:///data/corrections.sqlite3

finetune: $(STAMP)  ## Fine-tune the model on the stored corrections; writes model/versions/<version>/
	$(PY) -m train.finetune --database-url $(DATABASE_URL)
