"""The router: the OpenAI-compatible edge in front of runtime pools (canary splits, rollback, QoS, tenant limits)."""
