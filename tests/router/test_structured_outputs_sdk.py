"""Structured outputs through `shoal router` in front of a real runtime on the embedded model, driven
by the official `openai` SDK: `response_format` json_schema content validates against its schema
(checked with jsonschema) for a table of schemas, json_object content parses, vLLM's
`structured_outputs` (regex, choice, grammar) is followed, streaming included; invalid schemas and
grammars are 400s naming the parameter."""

import json
import re

import jsonschema
import openai
import pytest

from tests.router.conftest import MODEL
from tests.runtime.test_structured_outputs import SCHEMAS

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Describe a person as JSON."}]


def json_schema(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name.replace(" ", "_"), "schema": schema, "strict": True}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_content_validates(sdk_client, name):
    completion = sdk_client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_tokens=160, response_format=json_schema(name, SCHEMAS[name])
    )
    choice = completion.choices[0]
    jsonschema.validate(json.loads(choice.message.content), SCHEMAS[name])
    assert choice.finish_reason == "stop"


def test_json_object_streamed_and_not(sdk_client):
    capital = [{"role": "user", "content": 'Answer in JSON, as {"capital": ...}: what is the capital of France?'}]
    asked = {"model": MODEL, "messages": capital, "temperature": 0, "max_tokens": 60}
    whole = sdk_client.chat.completions.create(**asked, response_format={"type": "json_object"})
    assert whole.choices[0].finish_reason == "stop", whole.choices[0].message.content
    assert isinstance(json.loads(whole.choices[0].message.content), dict)
    chunks = sdk_client.chat.completions.create(**asked, response_format={"type": "json_object"}, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


def test_vllm_structured_outputs_on_chat_and_completions(sdk_client):
    question = [{"role": "user", "content": "What is the capital of France?"}]

    def chat(constraint: dict) -> str:
        completion = sdk_client.chat.completions.create(
            model=MODEL, messages=question, temperature=0, max_tokens=20, extra_body={"structured_outputs": constraint}
        )
        return completion.choices[0].message.content

    assert chat({"choice": ["Paris", "Rome", "a.b (c)"]}) in ("Paris", "Rome", "a.b (c)")
    assert re.fullmatch(r"[A-Z][a-z]+", chat({"regex": "[A-Z][a-z]+"}))
    assert chat({"grammar": 'root ::= "yes" | "no"'}) in ("yes", "no")
    completion = sdk_client.completions.create(
        model=MODEL,
        prompt="The year is",
        max_tokens=8,
        temperature=0,
        extra_body={"structured_outputs": {"regex": " [0-9]{4}"}},
    )
    assert re.fullmatch(r" [0-9]{4}", completion.choices[0].text)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"response_format": json_schema("bad", {"type": "objec"})}, "structured.json_schema"),
        ({"response_format": json_schema("bad", {"type": "object", "properties": 5})}, "structured.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "no spaces allowed"}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"extra_body": {"structured_outputs": {"regex": "(unclosed"}}}, "structured.regex"),
        ({"extra_body": {"structured_outputs": {"grammar": "root ::= missing_rule"}}}, "structured.grammar"),
        ({"extra_body": {"structured_outputs": {"regex": "a", "choice": ["b"]}}}, "structured_outputs"),
        ({"extra_body": {"structured_outputs": {"choice": []}}}, "structured_outputs.choice"),
    ],
)
def test_bad_constraints_are_400s_naming_the_parameter(sdk_client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, **kwargs)
    assert caught.value.param == param, caught.value.message
