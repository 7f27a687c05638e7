"""A runtime of several ranks: rank 0 (the engine) starts, drives and watches the worker ranks, one process each."""
