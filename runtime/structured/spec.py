"""What a request's output must follow (OpenAI's response_format, vLLM's structured outputs), as plain
values; runtime/structured/compiler.py turns it into a grammar."""

import json
from dataclasses import dataclass

from shoal.runtime.errors import InvalidRequestError

JSON_SCHEMA, JSON_OBJECT, REGEX, GRAMMAR = "json_schema", "json_object", "regex", "grammar"
STRUCTURAL_TAG = "structural_tag"
KINDS = (JSON_SCHEMA, JSON_OBJECT, REGEX, GRAMMAR, STRUCTURAL_TAG)


@dataclass(frozen=True)
class StructuredOutput:
    """`json_schema`: a JSON Schema as JSON text; `json_object`: any JSON object (no value); `regex`: a
    regular expression; `grammar`: an EBNF grammar (xgrammar's GBNF dialect, root rule `root`);
    `structural_tag`: xgrammar's structural tag as JSON (what forced tool calls compile to)."""

    kind: str
    value: str = ""

    def __post_init__(self) -> None:
        field = f"sampling.structured.{self.kind}"
        if self.kind not in KINDS:
            raise InvalidRequestError("sampling.structured", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == JSON_OBJECT:
            if self.value:
                raise InvalidRequestError(field, "takes no value")
            return
        if not self.value.strip():
            raise InvalidRequestError(field, "must not be empty")
        if self.kind == JSON_SCHEMA:
            try:
                schema = json.loads(self.value)
            except ValueError as error:
                raise InvalidRequestError(field, f"is not JSON: {error}") from None
            if not isinstance(schema, (dict, bool)):
                raise InvalidRequestError(field, f"must be a JSON Schema (an object), got {type(schema).__name__}")
