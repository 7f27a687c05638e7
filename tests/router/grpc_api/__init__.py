"""Tests of shoal.router.grpc_api."""
