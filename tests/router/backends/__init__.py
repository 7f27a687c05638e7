"""Tests of shoal.router.backends."""
