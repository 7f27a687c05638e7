"""The local node (tests/support/local_node.py and the pod_* modules it uses): its pure parts
directly, and the whole node on the real control plane, through the `cluster` fixture."""
