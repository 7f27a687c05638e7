"""Shoal's model server: a paged-KV, continuous-batching engine behind gRPC (`shoal runtime`)."""
