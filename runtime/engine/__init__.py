"""The engine: request state, KV blocks, scheduling, stop conditions, and the step loop; messages.py
holds what it and the worker exchange."""
