"""OpenAI-compatible HTTP API: request parsing, error shapes, chat/completions/models handlers, SSE."""
