"""How each model family writes a tool call as text.

One description serves both directions: the grammar that forces a call's exact text (`begin`, `end` and
`separator`, the parts of an xgrammar structural tag) and the parser that reads calls back out of the
output (parser.py), which also accepts the small variations a model writes when nothing forces it.
"""

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ToolFormat:
    """One family's tool-call syntax. A call is `call_open`, a JSON object `{"name": ..., <arguments key>: {...}}`,
    then `call_close`; several calls follow each other joined by `separator`."""

    name: str
    call_open: str
    call_close: str
    # The first key is the one a grammar forces; the parser accepts any of them.
    arguments_keys: tuple[str, ...]
    separator: str
    # Token text a model may write once before its calls (Llama's <|python_tag|>); a grammar leaves it out.
    lead_in: str = ""

    @property
    def arguments_key(self) -> str:
        return self.arguments_keys[0]

    @property
    def trigger(self) -> str:
        """Text that starts a call wherever it appears in the output. A format without one (a call is a bare
        JSON object) has its calls only at the start of the output and right after another call: elsewhere a
        `{` is far more likely prose than a call."""
        return self.call_open.strip()

    def begin(self, name: str) -> str:
        """A call's text up to where its arguments' JSON value starts."""
        return f'{self.call_open}{{"name": {json.dumps(name, ensure_ascii=False)}, "{self.arguments_key}": '

    @property
    def end(self) -> str:
        """A call's text after its arguments' JSON value."""
        return "}" + self.call_close


# Qwen2.5, Qwen3 and Hermes models; also the syntax a model without a tools-aware chat template is told to use.
HERMES = ToolFormat(
    name="hermes", call_open="<tool_call>\n", call_close="\n</tool_call>", arguments_keys=("arguments",), separator="\n"
)

# Llama 3.1 and 3.2: a bare JSON object whose arguments key is "parameters" (some write "arguments").
LLAMA3_JSON = ToolFormat(
    name="llama3_json",
    call_open="",
    call_close="",
    arguments_keys=("parameters", "arguments"),
    separator="; ",
    lead_in="<|python_tag|>",
)

FORMATS = {tool_format.name: tool_format for tool_format in (HERMES, LLAMA3_JSON)}
