# NVIDIA's TensorRT image of the same NGC release as nvcr.io/nvidia/tritonserver:26.09-py3 (the same TensorRT, so the engine it
# builds loads in that Triton) with the whole nvembed-trt package: the deployment's init step builds the engine on
# the node's GPU with it. Rendered by nvembed_trt.deploy.dockerfile; build from the project root:
#   docker build -t nvembed-trt-builder:26.09 -f deploy/Dockerfile.builder .
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:26.09-py3
FROM ${TENSORRT_IMAGE}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /opt/nvembed-trt/
COPY src /opt/nvembed-trt/src
# torch only sizes the model on the meta device here: the CPU wheel is enough (TORCH_INDEX picks an index)
ARG TORCH_INDEX=""
RUN python3 -m pip install torch==2.13.0 ${TORCH_INDEX:+--index-url $TORCH_INDEX} \
 && python3 -m pip install /opt/nvembed-trt
