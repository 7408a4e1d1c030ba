# pcsr-lightning: every target creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINT := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: help install test test-slow demo reproduce-table clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINT) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package (torch pinned by constraints.txt)

test: $(STAMP)  ## fast test suite (CPU, a few minutes)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## only the slow tests (DDP with 2 processes, big images)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)  ## the main job on the embedded sample photos
	$(BIN)/pcsr demo

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) outputs multirun results
