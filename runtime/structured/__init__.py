"""Constrained decoding: what a request's output must follow, its grammar compiled by xgrammar, and
the per-step mask of the tokens each constrained row may take."""
