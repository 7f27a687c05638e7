"""Tool (function) calls: each model family's syntax for writing them, and the parser that reads them out of a
model's streamed output."""
