"""The engine: request state, KV blocks, scheduling, and the step loop."""
