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

# reproduce-table: the table study (conf/study/table.yaml). Checkpoints from make variables (a .ckpt, a
# manifest.json or a run folder) or the finished training runs under TABLE_RUNS; when neither is given the
# study trains the six models first (profile TABLE_PROFILE; a second make resumes them). Datasets from
# TEST2K / TEST4K / TEST8K / URBAN100 (folders of HR images); none = the held-out sample photos. The study
# writes under $(TABLE_DIR)/studies/table/ and copies table.md, table.csv and the curves to TABLE_OUT.
TABLE_OUT ?= results/table
TABLE_DIR ?= results
TABLE_RUNS ?=
TABLE_PROFILE ?= table
TABLE_ARGS ?=
TABLE_ROWS := $(if $(FSRCNN),rows.FSRCNN=$(FSRCNN)) $(if $(FSRCNN_PCSR),rows.FSRCNN-PCSR=$(FSRCNN_PCSR)) \
	$(if $(CARN),rows.CARN=$(CARN)) $(if $(CARN_PCSR),rows.CARN-PCSR=$(CARN_PCSR)) \
	$(if $(SRRESNET),rows.SRResNet=$(SRRESNET)) $(if $(SRRESNET_PCSR),rows.SRResNet-PCSR=$(SRRESNET_PCSR))
TABLE_DATA := $(if $(TEST2K),datasets.Test2K=$(TEST2K)) $(if $(TEST4K),datasets.Test4K=$(TEST4K)) \
	$(if $(TEST8K),datasets.Test8K=$(TEST8K)) $(if $(URBAN100),datasets.Urban100=$(URBAN100))
TABLE_GIVEN := $(strip $(TABLE_ROWS) $(TABLE_RUNS))

reproduce-table: $(STAMP)  ## the paper's Table 1 (results/table/table.md, .csv, curves); see README
	$(BIN)/pcsr-study study=table $(if $(TABLE_GIVEN),'~study.steps.train') $(strip $(TABLE_ROWS)) \
		$(if $(TABLE_RUNS),runs=$(TABLE_RUNS)) $(strip $(TABLE_DATA)) train_profile=$(TABLE_PROFILE) \
		out=$(TABLE_OUT) paths.log_dir=$(TABLE_DIR) $(TABLE_ARGS)

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) outputs multirun results
