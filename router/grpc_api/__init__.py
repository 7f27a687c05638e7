"""The public gRPC API (shoal.v1.Inference), with the HTTP API's semantics and status codes."""
