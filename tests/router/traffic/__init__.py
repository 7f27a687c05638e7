"""Tests of shoal.router.traffic."""
