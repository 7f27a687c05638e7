"""The Shoal operator: ModelPool resources reconciled into runtime Deployments, a Service and router routes."""
