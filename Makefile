# pcsr-lightning: every target creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINT := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: help install lint test test-slow demo reproduce-table clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINT) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package (torch pinned by constraints.txt)

lint: $(STAMP)  ## ruff (pyflakes, style, import order) and the one-way layers of pyproject.toml (import-linter)
	$(BIN)/ruff check src tests experiments
	$(BIN)/lint-imports

test: lint  ## lint, then the fast test suite (CPU, a few minutes)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## only the slow tests (DDP with 2 processes, a preempted sweep job, big images)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)  ## the main job on the embedded sample photos
	$(BIN)/pcsr demo

# reproduce-table: checkpoints from make variables (a .ckpt, a manifest.json or a run folder) or, when
# none is given, from training runs under TABLE_RUNS (trained by TABLE_TRAIN if none are there yet).
# Datasets from TEST2K / TEST4K / TEST8K / URBAN100 (folders of HR images); none = the sample photos.
TABLE_OUT ?= results/table
TABLE_RUNS ?= results/runs
TABLE_TRAIN ?= $(BIN)/pcsr-train -m experiment=fsrcnn_original,fsrcnn_pcsr,carn_original,carn_pcsr,srresnet_original,srresnet_pcsr profile=table hydra.sweep.dir=$(TABLE_RUNS)
TABLE_ARGS ?=
TABLE_ROWS := $(if $(FSRCNN),--row FSRCNN=$(FSRCNN)) $(if $(FSRCNN_PCSR),--row FSRCNN-PCSR=$(FSRCNN_PCSR)) \
	$(if $(CARN),--row CARN=$(CARN)) $(if $(CARN_PCSR),--row CARN-PCSR=$(CARN_PCSR)) \
	$(if $(SRRESNET),--row SRResNet=$(SRRESNET)) $(if $(SRRESNET_PCSR),--row SRResNet-PCSR=$(SRRESNET_PCSR))
TABLE_DATA := $(if $(TEST2K),--dataset Test2K=$(TEST2K)) $(if $(TEST4K),--dataset Test4K=$(TEST4K)) \
	$(if $(TEST8K),--dataset Test8K=$(TEST8K)) $(if $(URBAN100),--dataset Urban100=$(URBAN100))

reproduce-table: $(STAMP)  ## the paper's Table 1 (results/table/table.md, .csv, curves); see README
	@if [ -z "$(strip $(TABLE_ROWS))" ] && ! find $(TABLE_RUNS) -name manifest.json 2>/dev/null | grep -q .; then \
		echo "no checkpoints given: training the default models ($(TABLE_TRAIN))"; \
		$(TABLE_TRAIN) || { echo "error: training failed; give checkpoints instead, e.g. make reproduce-table CARN=carn.ckpt CARN_PCSR=carn-pcsr.ckpt" >&2; exit 2; }; \
	fi
	$(BIN)/pcsr table $(if $(strip $(TABLE_ROWS)),$(TABLE_ROWS),--runs $(TABLE_RUNS)) $(TABLE_DATA) --out-dir $(TABLE_OUT) $(TABLE_ARGS)

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) outputs multirun results
