"""OpenAI's Responses API, `POST /v1/responses`: a request's input items become a chat prompt the
runtime templates (input_items, tools, parsing), its answer becomes a `response` object or the
stream of events that builds one (objects, events); handler.py serves it through the same
admission as chat completions. Nothing is stored: every request carries its whole conversation."""
