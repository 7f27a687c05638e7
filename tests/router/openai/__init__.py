"""Tests of shoal.router.openai."""
