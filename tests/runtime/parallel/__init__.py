"""Tests of runtime/parallel/."""
