# syntax=docker/dockerfile:1
# `shoal operator`: ModelPools into runtime Deployments, Services and router routes. No torch:
# torch and the model stack are hard dependencies of the shoal package, but the operator never
# imports them, so shoal goes in with --no-deps beside what docker/control_plane_requirements.py lists.
#   make images, or: docker build -f docker/operator.Dockerfile -t ghcr.io/shoal-dev/shoal-operator:0.1.0 .
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
# With a read-only root filesystem, mount an emptyDir at /tmp: the operator writes a kubeconfig's
# inline client certificate there (in-cluster it writes nothing).
ENV PATH=/opt/shoal/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN shoal operator --help > /dev/null && python -c "import shoal.operator.serve"
WORKDIR /opt/shoal
USER 1000:1000
# kopf's liveness endpoint (--liveness)
EXPOSE 8080
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="shoal-operator" \
      org.opencontainers.image.description="Shoal's kopf operator for the ModelPool CRD" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENTRYPOINT ["shoal"]
CMD ["operator"]
