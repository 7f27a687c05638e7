"""Model architectures, weight loading, and the runner that turns a scheduled batch into tokens."""
