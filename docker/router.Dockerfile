# syntax=docker/dockerfile:1
# `shoal router`: the OpenAI-compatible edge in front of the pools. No torch: torch and the model
# stack are hard dependencies of the shoal package, but the router never imports them, so shoal goes
# in with --no-deps beside what docker/control_plane_requirements.py lists.
#   make images, or: docker build -f docker/router.Dockerfile -t ghcr.io/shoal-dev/shoal-router:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/shoal
WORKDIR /src
COPY pyproject.toml docker/control_plane_requirements.py ./
RUN python control_plane_requirements.py pyproject.toml > requirements.txt \
 && /opt/shoal/bin/pip install -r requirements.txt
COPY README.md ./
COPY shoal shoal
COPY runtime runtime
COPY router router
COPY operator operator
RUN /opt/shoal/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp shoal
COPY --from=build /opt/shoal /opt/shoal
# The router writes no files; HOME is /tmp so that a library that does finds it writable under a
# read-only root filesystem with an emptyDir there.
ENV PATH=/opt/shoal/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN shoal router --help > /dev/null && python -c "import shoal.router.serve"
WORKDIR /opt/shoal
USER 1000:1000
# OpenAI HTTP API, admin API, public gRPC API (router/config.py's defaults)
EXPOSE 8000 8002 50052
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="shoal-router" \
      org.opencontainers.image.description="Shoal's OpenAI-compatible router: canary split and rollback, QoS, tenant limits" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENTRYPOINT ["shoal"]
CMD ["router", "--config", "/etc/shoal/router.yaml"]
