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
NAME        ?= $(notdir $(MODEL))
POOLING     ?= engine
DTYPE       ?= float32
EXPORT_DIR  := export/$(NAME)
CALIB_DIR   := calibration/$(NAME)
RECIPE      ?= fp16
GPU         ?= rtx-6000-ada
FLAVOR      ?= auto
ENGINE_DIR  := engines/$(GPU)/$(NAME)/$(RECIPE)
PYTEST_ARGS ?=
STAMP       := $(VENV)/.installed-stamp

.PHONY: all install test embed export calibrate precision engines gpus clean help

help:
	@echo "make all      the whole pipeline on MODEL=$(MODEL) (today: embed examples/sample.jsonl)"
	@echo "make test     install into $(VENV) and run the tests (PYTEST_ARGS=... passes options)"
	@echo "make export   ONNX export of MODEL into export/NAME/ (POOLING=engine|ensemble DTYPE=float32|float16)"
	@echo "make calibrate  calibration set for MODEL into calibration/NAME/ (real text from the Python docs)"
	@echo "make precision  RECIPE=fp16|bf16|int8|... on the export: export/NAME/RECIPE/model.onnx"
	@echo "make engines  TensorRT engine for GPU=$(GPU) RECIPE=$(RECIPE) FLAVOR=auto|tensorrt|tensorrt-rtx"
	@echo "make gpus     list the GPU profiles"
	@echo "make install  create $(VENV) with torch==$(TORCH_VERSION) and this package"
	@echo "make clean    remove build outputs (keeps $(VENV))"

all: embed export precision engines
	@echo "make all: done. Embeddings under $(BUILD)/$(NAME)/, ONNX export in $(EXPORT_DIR)/, $(RECIPE) graph in $(EXPORT_DIR)/$(RECIPE)/, engine in $(ENGINE_DIR)/"

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

# real file target: re-exported only when the package or the settings file changes
export: $(EXPORT_DIR)/model.onnx

$(EXPORT_DIR)/model.onnx: $(STAMP) $(shell find src -name '*.py' 2>/dev/null)
	$(BIN)/nvembed-trt export --model $(MODEL) --output $(EXPORT_DIR) --pooling $(POOLING) --dtype $(DTYPE) \
		--overwrite

calibrate: $(CALIB_DIR)/manifest.json

$(CALIB_DIR)/manifest.json: $(STAMP)
	$(BIN)/nvembed-trt calibrate --model $(MODEL) --output $(CALIB_DIR) --overwrite

precision: $(EXPORT_DIR)/$(RECIPE)/model.onnx

$(EXPORT_DIR)/$(RECIPE)/model.onnx: $(EXPORT_DIR)/model.onnx $(CALIB_DIR)/manifest.json
	$(BIN)/nvembed-trt precision --onnx $(EXPORT_DIR)/model.onnx --recipe $(RECIPE) --calibration $(CALIB_DIR) \
		--overwrite

engines: $(ENGINE_DIR)/model.plan

$(ENGINE_DIR)/model.plan: $(EXPORT_DIR)/$(RECIPE)/model.onnx
	$(BIN)/nvembed-trt build --onnx $(EXPORT_DIR)/$(RECIPE)/model.onnx --gpu $(GPU) --flavor $(FLAVOR) \
		--output $(ENGINE_DIR) --overwrite

gpus: $(STAMP)
	@$(BIN)/nvembed-trt gpus

clean:
	rm -rf $(BUILD)
