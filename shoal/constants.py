"""Names and numbers the operator, the router, the runtime and the manifests must agree on: the
ModelPool's API identity, the labels on its children, and the ports each process listens on by
default. crds/modelpool.yaml and the Helm chart spell the same values out; tests compare them.
"""

# The ModelPool custom resource (crds/modelpool.yaml).
GROUP = "shoal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelPool"
PLURAL = "modelpools"

# Labels the operator puts on a pool's Deployments and pods; the router's Kubernetes source reads them.
POOL_LABEL = f"{GROUP}/pool"
REVISION_LABEL = f"{GROUP}/revision"

# Default ports.
RUNTIME_GRPC_PORT = 50051  # the runtime's gRPC server (shoal.v1.Runtime)
RUNTIME_METRICS_PORT = 8001  # the runtime's /metrics, /health, /ready
ROUTER_HTTP_PORT = 8000  # the router's OpenAI-compatible API, /health, /ready (public)
ROUTER_ADMIN_PORT = 8002  # the router's admin API (routes, weights, verdicts, measurements) and its /metrics
ROUTER_GRPC_PORT = 50052  # the router's public gRPC API (shoal.v1.Inference)
OPERATOR_HEALTH_PORT = 8080  # the operator's liveness endpoint (/healthz)
OPERATOR_METRICS_PORT = 8081  # the operator's /metrics
