"""Runtime endpoints: where they come from (static file, Kubernetes), their channels, and the load balancer."""
