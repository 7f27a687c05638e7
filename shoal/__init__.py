"""Shoal: a Kubernetes-native control plane for fleets of LLM serving pools."""

__version__ = "0.1.0"
