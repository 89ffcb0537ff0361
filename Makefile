# The two commands a user needs: `make all` (the pipeline on the tiny model) and `make test`.
# Everything installs itself into .venv on first use; TORCH_INDEX picks a CUDA wheel index (see README).

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
MODEL       ?= tiny
BUILD       ?= build
PYTEST_ARGS ?=
STAMP       := $(VENV)/.installed-stamp

.PHONY: all install test embed clean help

help:
	@echo "make all      the whole pipeline on MODEL=$(MODEL) (today: embed examples/sample.jsonl)"
	@echo "make test     install into $(VENV) and run the tests (PYTEST_ARGS=... passes options)"
	@echo "make install  create $(VENV) with torch==$(TORCH_VERSION) and this package"
	@echo "make clean    remove build outputs (keeps $(VENV))"

all: embed
	@echo "make all: done. Outputs under $(BUILD)/$(notdir $(MODEL))/"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

embed: $(STAMP)
	$(BIN)/nvembed-trt embed --model $(MODEL) --input examples/sample.jsonl \
		--output $(BUILD)/$(notdir $(MODEL))/sample-embeddings.npy

clean:
	rm -rf $(BUILD)
