"""The CRDs, their examples and the operator's RBAC, checked as the API server would check them."""
