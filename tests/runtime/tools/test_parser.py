"""ToolCallParser: calls and content split out of streamed output, per format, whatever the chunking."""

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.runtime.tools.formats import FORMATS, HERMES, LLAMA3_JSON, ToolFormat
from shoal.runtime.tools.parser import CallDelta, ParsedDelta, ToolCallParser, new_call_id

WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TIME = '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'


@dataclass
class Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Merged:
    """What a client sees once it has joined every delta of a choice."""

    content: str = ""
    calls: list[Call] = field(default_factory=list)


def counting_ids():
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def merge(deltas: Iterable[ParsedDelta]) -> Merged:
    merged = Merged()
    for delta in deltas:
        merged.content += delta.content
        for call in delta.calls:
            if call.index == len(merged.calls):
                merged.calls.append(Call())
            target = merged.calls[call.index]
            assert not (call.id and target.id), "a call's id comes once"
            assert not (call.name and target.name), "a call's name comes once"
            target.id += call.id
            target.name += call.name
            target.arguments += call.arguments
    return merged


def parse(tool_format: ToolFormat, pieces: Iterable[str]) -> Merged:
    parser = ToolCallParser(tool_format, call_id=counting_ids())
    deltas = [parser.feed(piece) for piece in pieces]
    return merge([*deltas, parser.finish()])


def test_single_call():
    assert parse(HERMES, [WEATHER]) == Merged("", [Call("call_0", "get_weather", '{"city": "Paris"}')])


def test_a_call_streams_its_id_and_name_first_then_its_arguments():
    parser = ToolCallParser(HERMES, call_id=lambda: "call_x")
    assert parser.feed('<tool_call>\n{"name": "get_weather", ').empty
    assert parser.feed('"arguments": ') == ParsedDelta("", (CallDelta(0, "call_x", "get_weather", ""),))
    assert parser.num_calls == 1
    assert parser.feed('{"city": ') == ParsedDelta("", (CallDelta(0, arguments='{"city":'),))
    assert parser.feed('"Paris"}}\n</tool_call>') == ParsedDelta("", (CallDelta(0, arguments=' "Paris"}'),))
    assert parser.finish().empty


def test_two_parallel_calls():
    merged = parse(HERMES, [WEATHER + "\n" + TIME + "\n"])
    assert merged == Merged(
        "", [Call("call_0", "get_weather", '{"city": "Paris"}'), Call("call_1", "get_time", '{"zone": "CET"}')]
    )


def test_content_before_a_call():
    assert parse(HERMES, ["Let me check.\n" + WEATHER]) == Merged(
        "Let me check.\n", [Call("call_0", "get_weather", '{"city": "Paris"}')]
    )


def test_content_after_calls_keeps_its_text_but_not_the_whitespace_around_calls():
    merged = parse(HERMES, ["\n" + WEATHER + "\n\n" + TIME + "\n\nDone."])
    assert merged.content == "Done."
    assert [call.name for call in merged.calls] == ["get_weather", "get_time"]


@pytest.mark.parametrize("tool_format", [HERMES, LLAMA3_JSON], ids=lambda f: f.name)
def test_prose_without_calls_is_all_content(tool_format):
    prose = 'If a < b, print {"a": 1} and <tool or <b>bold</b>; {"name": "x"} is not a call here.'
    parser = ToolCallParser(tool_format)
    assert merge([parser.feed(prose), parser.finish()]) == Merged(prose, [])
    assert parser.num_calls == 0


def test_content_is_held_back_only_while_it_may_start_a_trigger():
    parser = ToolCallParser(HERMES)
    assert parser.feed("Hello <tool") == ParsedDelta("Hello ")
    assert parser.feed("box> and <") == ParsedDelta("<toolbox> and ")
    assert parser.finish() == ParsedDelta("<")


@pytest.mark.parametrize("lead_in", ["", "<|python_tag|>"])
def test_llama3_call_with_and_without_python_tag(lead_in):
    text = lead_in + '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse(LLAMA3_JSON, [text]) == Merged("", [Call("call_0", "get_weather", '{"city": "Paris"}')])


def test_llama3_accepts_arguments_as_the_key():
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse(LLAMA3_JSON, [text]).calls == [Call("call_0", "get_weather", '{"city": "Paris"}')]


def test_llama3_calls_separated_by_semicolons():
    text = '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}; '
    assert parse(LLAMA3_JSON, [text]) == Merged("", [Call("call_0", "a", '{"x": 1}'), Call("call_1", "b", "{}")])


def test_llama3_object_in_the_middle_of_prose_is_content():
    text = 'Call it as {"name": "get_weather", "parameters": {"city": "Paris"}} please.'
    assert parse(LLAMA3_JSON, [text]) == Merged(text, [])


def test_llama3_prose_after_a_call_is_content():
    text = '{"name": "a", "parameters": {}}\n\nThat is all, {"name": "b", "parameters": {}}'
    content = 'That is all, {"name": "b", "parameters": {}}'
    assert parse(LLAMA3_JSON, [text]) == Merged(content, [Call("call_0", "a", "{}")])


def test_hermes_header_needs_the_arguments_key():
    text = '<tool_call>\n{"name": "a", "parameters": {}}\n</tool_call>'
    assert parse(HERMES, [text]) == Merged(text, [])


def test_malformed_trigger_is_given_back_as_content_and_parsing_goes_on():
    text = "<tool_call>hello</tool_call> then " + WEATHER
    assert parse(HERMES, [text]) == Merged(
        "<tool_call>hello</tool_call> then ", [Call("call_0", "get_weather", '{"city": "Paris"}')]
    )


def test_trigger_without_header_at_finish_is_content():
    text = 'Sure <tool_call>\n{"name": "get_wea'
    assert parse(HERMES, [text]) == Merged(text, [])


def test_incomplete_call_at_finish_stays_a_call():
    parser = ToolCallParser(HERMES, call_id=lambda: "call_x")
    merged = merge([parser.feed('<tool_call>\n{"name": "f", "arguments": {"a": [1, '), parser.finish()])
    assert merged == Merged("", [Call("call_x", "f", '{"a": [1,')])
    assert parser.num_calls == 1


def test_arguments_are_exactly_the_text_the_model_wrote():
    arguments = '{ "q" : "caf\u00e9 \\"x\\"",\n  "n": [1, 2.5e3, true, null], "s": "}\\\\" }'
    text = f'<tool_call>\n{{ "name" : "m\u00e9t\u00e9o",\n "arguments":\n  {arguments}  }}\n</tool_call>'
    merged = parse(HERMES, [text])
    assert merged == Merged("", [Call("call_0", "m\u00e9t\u00e9o", arguments)])
    assert json.loads(merged.calls[0].arguments)["q"] == 'caf\u00e9 "x"'


def test_a_name_with_escapes_is_decoded():
    text = '<tool_call>{"name": "a\\"b\\u00e9", "arguments": {}}</tool_call>'
    assert parse(HERMES, [text]).calls == [Call("call_0", 'a"b\u00e9', "{}")]


EXAMPLES = [
    (HERMES, "Let me check.\n" + WEATHER + "\n" + TIME + "\nDone"),
    (HERMES, "<tool_call>oops <tool_call> " + WEATHER + " Hello <tool_cal"),
    (
        HERMES,
        '<tool_call>\n{"name": "n", "arguments": 12.5e3}\n</tool_call>\n<tool_call>{"name": "x", "arguments": [1, ',
    ),
    (HERMES, '<tool_call>\n{"name": "caf\u00e9", "arguments": {"q": "caf\u00e9 \\u00e9 \\"x\\"  "}} trailing'),
    (HERMES, "plain prose with < and { and </tool_call>"),
    (LLAMA3_JSON, '<|python_tag|>{"name": "a", "parameters": {"x": "y; z"}}; {"name": "b", "arguments": {}}; '),
    (LLAMA3_JSON, '  {"name": "a", "parameters": {"k": [1, {"v": "}"}]}}\n\nSo {"name": "b"}'),
    (LLAMA3_JSON, '{"answer": 42}'),
    (LLAMA3_JSON, '<|python_tag|>brave_search.call(query="x")'),
]


@pytest.mark.parametrize(("tool_format", "text"), EXAMPLES)
def test_the_result_does_not_depend_on_the_chunking(tool_format, text):
    whole = parse(tool_format, [text])
    assert parse(tool_format, list(text)) == whole
    for cut in range(1, len(text)):
        assert parse(tool_format, [text[:cut], text[cut:]]) == whole, f"split at {cut}"


# Pieces of call syntax and prose, so that random outputs often come close to calls, or are calls.
ATOMS = ["<tool_call>", "</tool_call>", "\n", " ", "{", "}", '"name"', ":", '"f"', ",", '"arguments"', '"parameters"']
ATOMS += ["; ", "<|python_tag|>", "x", '"', "\\", "1", ".", "e", "[", WEATHER, '{"name": "g", "parameters": {"a": 1}}']


@settings(max_examples=300, deadline=None)
@given(
    tool_format=st.sampled_from([HERMES, LLAMA3_JSON]),
    atoms=st.lists(st.sampled_from(ATOMS), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_random_outputs_cut_anywhere_parse_the_same(tool_format, atoms, cuts):
    text = "".join(atoms)
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    pieces = [text[start:end] for start, end in zip([0, *points], [*points, len(text)], strict=True)]
    assert parse(tool_format, pieces) == parse(tool_format, [text])


def test_the_examples_hold_what_they_should():
    """The chunking test compares against the whole-text parse; these pin some of those results down."""
    assert parse(*EXAMPLES[1]) == Merged(
        "<tool_call>oops <tool_call> Hello <tool_cal", [Call("call_0", "get_weather", '{"city": "Paris"}')]
    )
    assert [call.arguments for call in parse(*EXAMPLES[2]).calls] == [
        "12.5e3",
        "[1,",
    ]  # the cut call's trailing space is never sent
    assert parse(*EXAMPLES[5]).calls == [Call("call_0", "a", '{"x": "y; z"}'), Call("call_1", "b", "{}")]
    assert parse(*EXAMPLES[6]) == Merged('So {"name": "b"}', [Call("call_0", "a", '{"k": [1, {"v": "}"}]}')])
    assert parse(*EXAMPLES[7]) == Merged('{"answer": 42}', [])
    assert parse(*EXAMPLES[8]) == Merged(EXAMPLES[8][1], [])


def test_formats_describe_the_text_a_grammar_forces():
    assert HERMES.begin("get_weather") == '<tool_call>\n{"name": "get_weather", "arguments": '
    assert (HERMES.end, HERMES.separator) == ("}\n</tool_call>", "\n")
    assert LLAMA3_JSON.begin("get_weather") == '{"name": "get_weather", "parameters": '
    assert (LLAMA3_JSON.end, LLAMA3_JSON.separator) == ("}", "; ")
    assert FORMATS == {"hermes": HERMES, "llama3_json": LLAMA3_JSON}


@pytest.mark.parametrize(("tool_format", "name"), [(HERMES, "get_weather"), (LLAMA3_JSON, "f")])
def test_text_a_grammar_forces_is_parsed_back(tool_format, name):
    text = tool_format.separator.join(tool_format.begin(name) + '{"a": 1}' + tool_format.end for _ in range(2))
    assert parse(tool_format, [text]).calls == [Call("call_0", name, '{"a": 1}'), Call("call_1", name, '{"a": 1}')]


def test_default_ids_look_like_openai_ids():
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(id_) == 29 and id_.startswith("call_") and id_[5:].isalnum() for id_ in ids)
