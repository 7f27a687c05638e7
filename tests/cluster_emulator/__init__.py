"""Tests of the emulated cluster (tests/support/): that it answers as Kubernetes would."""
