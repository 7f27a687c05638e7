"""Example router configs: local.yaml (what `make run` serves) and its API-key file."""
