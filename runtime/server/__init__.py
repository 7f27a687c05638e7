"""The runtime's network edges: gRPC service, /metrics and /health over HTTP."""
