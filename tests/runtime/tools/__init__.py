"""Tests of shoal.runtime.tools."""
