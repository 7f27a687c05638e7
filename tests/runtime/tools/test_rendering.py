"""Tools into the prompt: a template written for tools gets them (and the calls and results in the
messages) through `tools=`; a template without a place for them (the embedded SmolLM2's) gets them
in the system message, with the calls written back in the syntax it is told to use. The format is
read from the template, or given by --tool-call-parser."""

import copy
import json

import pytest

from shoal.runtime.tokenization.tokenizer import encode_chat
from shoal.runtime.tools.family import template_renders_tools, tool_format_for
from shoal.runtime.tools.formats import HERMES, LLAMA3_JSON
from shoal.runtime.tools.rendering import template_input
from shoal.runtime.tools.spec import REQUIRED, Tool, ToolChoice
from shoal.v1 import runtime_pb2 as pb

WEATHER = Tool(
    "get_weather", "Current weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CONVERSATION = [
    pb.ChatMessage(role="user", content="Weather in Paris?"),
    pb.ChatMessage(
        role="assistant", tool_calls=[pb.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')]
    ),
    pb.ChatMessage(role="tool", tool_call_id="call_1", content="21 C, sunny"),
]
# A Hermes-style template that writes tools, calls and results itself, as Qwen2.5's does.
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools><|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}'
    "{% elif m.role == 'tool' %}<tool_response>{{ m.tool_call_id }}: {{ m.content }}</tool_response>"
    "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def rendered(tokenizer, messages, choice, native: bool) -> str:
    return tokenizer.decode(encode_chat(tokenizer, template_input(messages, choice, HERMES, native)))


def test_a_template_without_tools_gets_them_in_the_system_message(smollm_tokenizer):
    assert not template_renders_tools(smollm_tokenizer.chat_template)
    text = rendered(smollm_tokenizer, CONVERSATION, ToolChoice((WEATHER,), REQUIRED), native=False)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\n") and json.dumps(WEATHER.to_openai()) in system
    assert HERMES.begin("<function-name>") + "<arguments-json-object>" + HERMES.end in system
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in text
    )
    assert "<|im_start|>user\n<tool_response>\n21 C, sunny\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_a_system_message_of_the_client_keeps_its_text_before_the_tools(smollm_tokenizer):
    messages = [pb.ChatMessage(role="system", content="Be brief."), *CONVERSATION[:1]]
    text = rendered(smollm_tokenizer, messages, ToolChoice((WEATHER,)), native=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools") and text.count("<|im_start|>system") == 1


def test_no_tools_renders_as_before(smollm_tokenizer):
    messages = CONVERSATION[:1]
    plain = smollm_tokenizer.apply_chat_template([{"role": "user", "content": "Weather in Paris?"}], tokenize=False)
    assert rendered(smollm_tokenizer, messages, None, native=False) == plain + "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tools_tokenizer(smollm_tokenizer):
    tokenizer = copy.deepcopy(smollm_tokenizer)
    tokenizer.chat_template = TOOLS_TEMPLATE
    return tokenizer


def test_a_template_written_for_tools_renders_them_itself(tools_tokenizer):
    assert template_renders_tools(tools_tokenizer.chat_template)
    text = rendered(tools_tokenizer, CONVERSATION, ToolChoice((WEATHER,)), native=True)
    assert f"<tools>{json.dumps(WEATHER.to_openai())}</tools>" in text
    # The arguments reach the template as an object (templates write them with `tojson`).
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert "<tool_response>call_1: 21 C, sunny</tool_response>" in text
    assert "# Tools" not in text


def test_the_format_comes_from_the_flag_or_the_template():
    assert tool_format_for("auto", TOOLS_TEMPLATE) is HERMES
    assert tool_format_for("auto", "{{ '<|python_tag|>' }}{% if tools %}{% endif %}") is LLAMA3_JSON
    assert tool_format_for("auto", None) is HERMES
    assert tool_format_for("llama3_json", TOOLS_TEMPLATE) is LLAMA3_JSON
