# Quick start: `make run` (example workflow) and `make test`. Both call `make setup` first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_CPU := torch==2.13.0

.PHONY: setup run test test-quick bench lint clean profile

# The fragment kernels, compiled ahead of time (python -m gtok.kernels; a no-op when they are up
# to date), so `gtok tokenize` of a small fragments file starts in under a second.
setup: $(STAMP)
	$(BIN)/python -m gtok.kernels

# Rebuilt only when the project's dependencies change, so a second `make setup` takes no time.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_CPU)"
	$(BIN)/pip install --quiet -e ".[all,test]"
	touch $(STAMP)

# The whole workflow on the bundled examples (resources/example/), locally, each with its report:
# the simulated cells and BED files (results/, report.html), then the real Corces 2016 cells
# (results-corces/, report-corces.html).
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --configfile config/example.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --configfile config/example.yaml --report report.html
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --configfile config/example-corces.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --configfile config/example-corces.yaml --report report-corces.html
	@echo "Done: results/ and results-corces/ hold the shards, manifests and trained models; open report.html (simulated) and report-corces.html (real cells)."

# Everything: unit, property, edge-case, training, workflow and real-SLURM tests (minutes).
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# Unit and property tests only (under a minute), while developing.
test-quick: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow and not bench"

# `snakemake --profile slurm` from anywhere: installs profiles/slurm as Snakemake's user profile
# `slurm` ($$XDG_CONFIG_HOME/snakemake/slurm, else ~/.config/snakemake/slurm); never overwrites a
# different one (shows the difference). PROFILE_ARGS="--partition cpu --gpu-partition gpu --account lab"
# fills in the placeholders.
profile: setup
	$(BIN)/python tools/install_profile.py $(PROFILE_ARGS)

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m bench -s -o python_files='test_*.py bench_*.py' bench

# Python (ruff), Snakemake formatting (snakefmt) and Snakemake's own linter, on the quick CI config.
lint: setup
	$(BIN)/ruff check src tests bench scripts tools docs/examples
	$(BIN)/snakefmt --check Snakefile workflow/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint --directory .test

# What the workflow can make again: the examples' (and, with the default `results:`, your own)
# shards, manifests, statistics, evaluations and Snakemake's records. Trained models are kept: a
# results folder's train/ (the model, and every earlier one in train/previous/) costs the most to
# make again, and the same `results:` may hold your own; delete it by hand when you mean to.
clean:
	@for dir in results results-corces .test/results; do \
		test -d $$dir || continue; \
		find $$dir -mindepth 1 -maxdepth 1 ! -name train -exec rm -rf {} +; \
		if test -d $$dir/train; then echo "make clean: kept $$dir/train (trained models; rm -rf $$dir/train deletes them)"; \
		else rmdir $$dir; fi; \
	done
	rm -rf .snakemake .test/.snakemake
