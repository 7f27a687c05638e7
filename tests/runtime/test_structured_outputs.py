"""Constrained decoding on the embedded model, in the engine: outputs follow their JSON schema, regex
or grammar (checked with jsonschema and re, not by the grammar engine that made them); a structure
cut short by max_tokens ends with `length`; unconstrained rows batched beside constrained ones are
unchanged; bad schemas are refused naming the field; KV blocks all come back. With and without async
scheduling."""

import json
import re

import jsonschema
import pytest

from shoal.runtime.engine.request import FinishReason
from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.spec import GRAMMAR, JSON_OBJECT, JSON_SCHEMA, REGEX, StructuredOutput
from tests.runtime.engine_harness import build

pytestmark = pytest.mark.integration

SCHEMAS = {
    "nested object": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}, "zip": {"type": "string"}},
                "required": ["city"],
            },
        },
        "required": ["name", "address"],
    },
    "array of enums": {
        "type": "object",
        "properties": {
            "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3}
        },
        "required": ["colors"],
    },
    "bounded numbers": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["age", "score"],
    },
    "optional fields": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}, "country": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module", params=[False, True], ids=["sync", "async-scheduling"])
def built(smollm_dir, request):
    """Under async scheduling a constrained step is launched with the step before in flight, and
    reads that step's draws (feeding the grammars) once its own forward pass is queued."""
    return build(smollm_dir, async_scheduling=request.param)


def chat(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def run(built, requests: dict[str, tuple[list[int], SamplingParams]]) -> dict[str, tuple[str, FinishReason]]:
    """Adds every request at once and steps to the end; each one's text and finish reason."""
    engine, tokenizer = built.engine, built.tokenizer
    for request_id, (prompt, sampling) in requests.items():
        grammar = built.grammars.compile(sampling.structured)[0] if sampling.structured else None
        engine.add_request(request_id, prompt, sampling, grammar=grammar)
    tokens: dict[str, list[int]] = {r: [] for r in requests}
    reasons = {}
    while engine.has_unfinished():
        for output in engine.step().outputs:
            tokens[output.request_id] += output.new_token_ids
            if output.finished:
                reasons[output.request_id] = output.finish_reason
    return {r: (tokenizer.decode(t, skip_special_tokens=True), reasons[r]) for r, t in tokens.items()}


def greedy(max_tokens: int, structured: StructuredOutput | None = None) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, structured=structured)


def test_json_schema_outputs_validate_for_a_table_of_schemas(built):
    prompt = chat(built.tokenizer, "Describe a person as JSON.")
    requests = {
        name: (prompt, greedy(160, StructuredOutput(JSON_SCHEMA, json.dumps(schema))))
        for name, schema in SCHEMAS.items()
    }
    results = run(built, requests)
    for name, (text, reason) in results.items():
        assert reason is FinishReason.STOP, (name, text)
        jsonschema.validate(json.loads(text), SCHEMAS[name])  # raises if it does not follow the schema
    stats = built.engine.stats()
    assert stats.kv_blocks_free == stats.kv_blocks_total


def test_json_object_regex_and_grammar_are_followed_and_sampling_too(built):
    prompt = chat(built.tokenizer, "What is the capital of France?")
    results = run(
        built,
        {
            "object": (prompt, greedy(60, StructuredOutput(JSON_OBJECT))),
            "regex": (prompt, greedy(30, StructuredOutput(REGEX, r"[A-Z][a-z]+, [0-9]{4}"))),
            "grammar": (prompt, greedy(10, StructuredOutput(GRAMMAR, 'root ::= "yes" | "no" | "maybe"'))),
            "sampled": (
                prompt,
                SamplingParams(temperature=1.5, seed=7, max_tokens=30, structured=StructuredOutput(REGEX, r"[0-9]{3}")),
            ),
        },
    )
    text, reason = results["object"]
    assert isinstance(json.loads(text), dict) and reason is FinishReason.STOP
    assert re.fullmatch(r"[A-Z][a-z]+, [0-9]{4}", results["regex"][0]), results["regex"]
    assert results["grammar"][0] in ("yes", "no", "maybe")
    assert re.fullmatch(r"[0-9]{3}", results["sampled"][0]) and results["sampled"][1] is FinishReason.STOP


def test_a_structure_cut_short_ends_with_length(built):
    schema = StructuredOutput(JSON_SCHEMA, json.dumps(SCHEMAS["nested object"]))
    ((text, reason),) = run(built, {"short": (chat(built.tokenizer, "A person?"), greedy(5, schema))}).values()
    assert reason is FinishReason.LENGTH and text.startswith("{")


def test_unconstrained_rows_beside_constrained_ones_are_unchanged(built):
    prompt = chat(built.tokenizer, "What is the capital of France?")
    alone = run(built, {"plain": (prompt, greedy(12))})["plain"]
    beside = run(
        built,
        {
            "plain": (prompt, greedy(12)),
            "constrained": (prompt, greedy(20, StructuredOutput(JSON_OBJECT))),
        },
    )["plain"]
    assert beside == alone and "Paris" in alone[0]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (StructuredOutput(JSON_SCHEMA, '{"type": "objec"}'), "sampling.structured.json_schema"),
        (StructuredOutput(REGEX, "a(b"), "sampling.structured.regex"),
        (StructuredOutput(GRAMMAR, "root ::= undefined_rule"), "sampling.structured.grammar"),
    ],
)
def test_what_cannot_be_compiled_is_refused_naming_its_field(built, spec, field):
    with pytest.raises(InvalidRequestError) as caught:
        built.grammars.compile(spec)
    assert caught.value.field == field and "/project/" not in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("json_schema", "", "must not be empty"),
        ("json_schema", "{not json", "is not JSON"),
        ("json_schema", "[1, 2]", "must be a JSON Schema"),
        ("json_object", "{}", "takes no value"),
        ("xml", "<a/>", "must be one of"),
    ],
)
def test_a_malformed_constraint_is_refused_before_compiling(kind, value, message):
    with pytest.raises(InvalidRequestError, match=message):
        StructuredOutput(kind, value)
