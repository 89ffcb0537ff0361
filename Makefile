# The two commands a user needs: `make all` (the pipeline on the tiny model) and `make test`.
# Everything installs itself into .venv on first use; TORCH_INDEX picks a CUDA wheel index (see docs/install.md).

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
PYTRITON_VERSION ?= 0.7.0
# LangChain's HuggingFaceEndpointEmbeddings, a client the tests run against serve, needs huggingface-hub<2 (the lock
# has 2.x): both install beside the venv, importable only where a test puts them on PYTHONPATH
LANGCHAIN_HF_VERSION ?= 1.2.3
LANGCHAIN_HF_HUB ?= 1.33.0
LANGCHAIN_HF_SITE := $(VENV)/clients/langchain-huggingface
# every dependency but torch pinned (a resolver's output, refreshed by `make lock`); torch: TORCH_VERSION above
LOCK        := constraints.txt
UV_VERSION  ?= 0.13.9
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
REPO_DIR    := triton_repo/$(NAME)
PORT        ?= 8080
SERVE_ARGS  ?=
# the Triton encoder: the recipe's ONNX graph run by ONNX Runtime here; ENCODER=$(ENGINE_DIR) on a TensorRT host
ENCODER     ?= $(EXPORT_DIR)/$(RECIPE)
ENCODER_FILE = $(if $(findstring engines/,$(ENCODER)),$(ENCODER)/model.plan,$(ENCODER)/model.onnx)
PYTEST_ARGS ?= --durations=25
ACCEPT_ARGS ?=
# another tritonserver for serve/smoke/validate/bench: /opt/tritonserver/bin/tritonserver in NVIDIA's image (TensorRT)
TRITONSERVER ?=
TRITON_FLAG = $(if $(TRITONSERVER),--tritonserver $(TRITONSERVER))
STAMP       := $(VENV)/.installed-stamp
CLIENTS_STAMP := $(LANGCHAIN_HF_SITE)/.installed-stamp

.PHONY: all install lock test embed export calibrate precision engines gpus triton-repo serve smoke validate bench \
	clean help doctor gpu-acceptance

help:
	@echo "make all      the whole pipeline on MODEL=$(MODEL) (today: embed examples/sample.jsonl)"
	@echo "make test     install into $(VENV) and run the tests (PYTEST_ARGS=... passes options)"
	@echo "make export   ONNX export of MODEL into export/NAME/ (POOLING=engine|ensemble DTYPE=float32|float16)"
	@echo "make calibrate  calibration set for MODEL into calibration/NAME/ (real text from the Python docs)"
	@echo "make precision  RECIPE=fp16|bf16|int8|... on the export: export/NAME/RECIPE/model.onnx"
	@echo "make engines  TensorRT engine for GPU=$(GPU) RECIPE=$(RECIPE) FLAVOR=auto|tensorrt|tensorrt-rtx"
	@echo "make gpus     list the GPU profiles"
	@echo "make triton-repo  Triton repository in triton_repo/NAME/ (ENCODER=export/... or engines/...)"
	@echo "make serve    serve it: /v1/embeddings on 127.0.0.1:$(PORT) over a supervised Triton, until Ctrl-C"
	@echo "make smoke    serve on free ports, embed examples/sample.jsonl through /v1/embeddings and KServe, compare"
	@echo "make validate every runtime and recipe found for NAME against the fp32 reference (exit 1 on failure)"
	@echo "make bench    latency/throughput of every runtime (BENCH_ARGS='--batch 1,8 --seq 32,512 ...')"
	@echo "make doctor   what this host has and lacks per stage (GPU=$(GPU): can it build and serve that profile)"
	@echo "make gpu-acceptance  the first run on a GPU host, pip only, ~10 min on an H100 (ACCEPT_ARGS=--dry-run ...)"
	@echo "make install  create $(VENV) with torch==$(TORCH_VERSION) and this package, dependencies from $(LOCK)"
	@echo "make lock     re-resolve $(LOCK) (newest versions allowed by pyproject.toml), reinstall, run the tests"
	@echo "make clean    remove build outputs (keeps $(VENV))"

all: embed export precision engines triton-repo smoke
	@echo "make all: done."
	@echo "  reference embeddings  $(BUILD)/$(NAME)/sample-embeddings.npy"
	@echo "  ONNX export           $(EXPORT_DIR)/model.onnx (export.json: parity)"
	@echo "  $(RECIPE) graph            $(EXPORT_DIR)/$(RECIPE)/model.onnx (precision.json: accuracy gate)"
	@echo "  TensorRT engine       $(ENGINE_DIR)/model.plan (engine.json)"
	@echo "  Triton repository     $(REPO_DIR)/ (served through /v1/embeddings and KServe, checked: $(BUILD)/$(NAME)/serving-check.json)"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test]'
	# the real Triton server (binary + python backend) from nvidia-pytriton; --no-deps: its Python API is unused
	$(BIN)/python -m pip install --quiet --no-deps "nvidia-pytriton==$(PYTRITON_VERSION)"
	@touch $@

# --no-deps: everything else they import is in the lock (httpx, langchain-core, tokenizers, ...)
$(CLIENTS_STAMP): $(STAMP) Makefile
	rm -rf $(LANGCHAIN_HF_SITE)
	$(BIN)/python -m pip install --quiet --no-deps --target $(LANGCHAIN_HF_SITE) \
		"langchain-huggingface==$(LANGCHAIN_HF_VERSION)" "huggingface-hub==$(LANGCHAIN_HF_HUB)"
	@touch $@

install: $(STAMP) $(CLIENTS_STAMP)

# the lock: uv resolves pyproject.toml (extras test, corpus, serving) for Linux and CPython 3.10-3.12 ([tool.uv]),
# torch left out (installed apart, at TORCH_VERSION, from TORCH_INDEX); then the environment is reinstalled from it
# and the whole suite runs against it. Commit the new constraints.txt once the tests pass.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip compile --quiet pyproject.toml --extra test --extra corpus --extra serving --universal --upgrade \
		--no-python-downloads --excludes <(echo torch) --custom-compile-command "make lock" --output-file $(LOCK)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test]'
	@touch $(STAMP)
	$(MAKE) test

test: $(STAMP) $(CLIENTS_STAMP)
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

triton-repo: $(REPO_DIR)/repo.json

$(REPO_DIR)/repo.json: $(ENCODER_FILE)
	$(BIN)/nvembed-trt triton-repo --model $(MODEL) --encoder $(ENCODER) --output $(REPO_DIR) --overwrite

serve: $(REPO_DIR)/repo.json
	$(BIN)/nvembed-trt serve --repo $(REPO_DIR) --port $(PORT) $(TRITON_FLAG) $(SERVE_ARGS)

smoke: $(REPO_DIR)/repo.json
	@mkdir -p $(BUILD)/$(NAME)
	$(BIN)/nvembed-trt smoke --repo $(REPO_DIR) --model $(MODEL) --input examples/sample.jsonl \
		--report $(BUILD)/$(NAME)/serving-check.json $(TRITON_FLAG)

validate: $(REPO_DIR)/repo.json
	$(BIN)/nvembed-trt validate --model $(MODEL) --name $(NAME) $(TRITON_FLAG)

BENCH_ARGS ?= --batch 1,8 --seq 32,128,512 --concurrency 1,4,8
bench: $(REPO_DIR)/repo.json
	$(BIN)/nvembed-trt bench --model $(MODEL) --name $(NAME) $(TRITON_FLAG) $(BENCH_ARGS)

gpus: $(STAMP)
	@$(BIN)/nvembed-trt gpus

clean:
	rm -rf $(BUILD)

doctor: $(STAMP)
	$(BIN)/nvembed-trt doctor --gpu $(GPU)

# installs CUDA torch and the pinned tensorrt into $(VENV) where the host has a GPU; report in $(BUILD)/gpu-acceptance/
gpu-acceptance: $(STAMP)
	$(BIN)/python benchmarks/gpu_acceptance.py --out $(BUILD)/gpu-acceptance $(ACCEPT_ARGS)
