"""What an OpenAI request asks its output to follow -> the runtime's StructuredOutput.

OpenAI's `response_format` on chat: `{"type": "text"}` (nothing), `{"type": "json_object"}`, or
`{"type": "json_schema", "json_schema": {"name", "schema", "strict"?, "description"?}}`. vLLM's
`structured_outputs` on chat and completions: one of `json` (a schema, as an object or as JSON
text), `regex`, `grammar` (EBNF), `choice` (a list of strings), `json_object: true` or
`structural_tag` (xgrammar's, as JSON text). The Responses API's `text.format` holds a named
schema's fields flat; json_schema_output reads them for both. Only one constraint per request.
Here the shapes are checked; `request.validated` checks a schema's validity for every surface, and
the runtime compiles it (a regex or grammar it cannot compile is its INVALID_ARGUMENT, a 400
naming the field).
"""

import json
import re

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.text import check_text
from shoal.v1 import runtime_pb2 as pb

SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
VLLM_KINDS = ("json", "regex", "grammar", "choice", "json_object", "structural_tag")


def structured_output(body: Body, chat: bool) -> pb.StructuredOutput | None:
    """The request's constraint, from response_format (chat only) or structured_outputs; None if none."""
    response_format = body.raw("response_format") if chat else None
    vllm = body.raw("structured_outputs")
    found = [
        constraint
        for constraint in (
            _response_format(response_format) if response_format is not None else None,
            _vllm(vllm) if vllm is not None else None,
        )
        if constraint is not None
    ]
    if len(found) > 1:
        raise InvalidRequest("structured_outputs", "Give either 'response_format' or 'structured_outputs', not both.")
    return found[0] if found else None


def _response_format(value) -> pb.StructuredOutput | None:
    if not isinstance(value, dict):
        raise InvalidRequest("response_format", "Invalid type for 'response_format': expected an object.")
    kind = value.get("type")
    if kind == "text" and set(value) == {"type"}:
        return None
    if kind == "json_object" and set(value) == {"type"}:
        return pb.StructuredOutput(json_object=True)
    if kind != "json_schema":
        raise InvalidRequest(
            "response_format.type",
            f"Invalid value for 'response_format.type': expected one of text, json_object, json_schema, got {kind!r}.",
        )
    body = Body({k: v for k, v in value.items() if k != "type"})
    spec = body.raw("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "response_format.json_schema", "Missing required parameter: 'response_format.json_schema'."
        )
    output = json_schema_output(spec, "response_format.json_schema")
    with prefixed("response_format."):
        body.done()
    return output


def json_schema_output(spec: dict, param: str) -> pb.StructuredOutput:
    """A named schema's fields (`name`, `schema`, `strict`?, `description`?) -> the constraint; `param`
    is where they sit (chat's `response_format.json_schema`, the Responses API's `text.format`)."""
    fields = Body(spec)
    name = fields.raw("name")
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
        raise InvalidRequest(f"{param}.name", f"Invalid '{param}.name': expected 1 to 64 letters, digits, '_' or '-'.")
    schema = fields.raw("schema")
    if schema is None:
        schema = {}  # OpenAI: without a schema, any JSON object
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param}.schema", f"Invalid type for '{param}.schema': expected an object.")
    with prefixed(param + "."):
        fields.boolean("strict", None)
        fields.string("description", None)
        fields.done()
    return pb.StructuredOutput(json_schema=json.dumps(schema or {"type": "object"}))


def _vllm(value) -> pb.StructuredOutput | None:
    if not isinstance(value, dict):
        raise InvalidRequest("structured_outputs", "Invalid type for 'structured_outputs': expected an object.")
    given = [k for k in VLLM_KINDS if value.get(k) not in (None, False)]
    unknown = sorted(set(value) - set(VLLM_KINDS))
    if unknown:
        raise InvalidRequest(f"structured_outputs.{unknown[0]}", f"Unknown constraint; one of {', '.join(VLLM_KINDS)}.")
    if len(given) != 1:
        raise InvalidRequest("structured_outputs", f"Give exactly one of {', '.join(VLLM_KINDS)}.")
    (kind,) = given
    item, param = value[kind], f"structured_outputs.{kind}"
    if kind == "json":
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except ValueError:
                raise InvalidRequest(param, f"Invalid '{param}': not JSON.") from None
        if not isinstance(item, dict):
            raise InvalidRequest(param, f"Invalid type for '{param}': expected a JSON Schema object.")
        return pb.StructuredOutput(json_schema=json.dumps(item))
    if kind == "json_object":
        if item is not True:
            raise InvalidRequest(param, f"Invalid '{param}': expected true.")
        return pb.StructuredOutput(json_object=True)
    if kind == "choice":
        if not isinstance(item, list) or not item or not all(isinstance(c, str) and c for c in item):
            raise InvalidRequest(param, f"Invalid '{param}': expected a non-empty array of non-empty strings.")
        for choice in item:
            check_text(param, choice)
        return pb.StructuredOutput(regex="|".join(_regex_literal(c) for c in item))
    if not isinstance(item, str) or not item.strip():
        raise InvalidRequest(param, f"Invalid '{param}': expected a non-empty string.")
    check_text(param, item)  # before protobuf, which cannot carry a lone surrogate
    return pb.StructuredOutput(**{kind: item})


def _regex_literal(text: str) -> str:
    """The text as a regex that matches only it (xgrammar's regex dialect is ECMAScript's)."""
    return "(" + re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", text) + ")"
