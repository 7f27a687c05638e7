"""The operator's autoscaler: decide.py (pure: load and history in, replicas and why out) and
report.py (pure: a decision as status, condition and event)."""
