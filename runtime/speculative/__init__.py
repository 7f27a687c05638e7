"""Speculative decoding: draft tokens proposed on the host, verified by the target model in one pass."""
