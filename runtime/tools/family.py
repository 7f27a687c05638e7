"""Which tool-call syntax this model writes: given by `--tool-call-parser` (vLLM's flag), or with
`auto` read from its chat template. A template that has no place for tools gets Hermes', which the
system message then teaches it (rendering.py)."""

from shoal.runtime.tools.formats import FORMATS, HERMES, LLAMA3_JSON, ToolFormat

AUTO_PARSER = "auto"
PARSERS = (AUTO_PARSER, *FORMATS)


def tool_format_for(parser: str, chat_template: str | None) -> ToolFormat:
    if parser != AUTO_PARSER:
        return FORMATS[parser]
    template = chat_template or ""
    if "<|python_tag|>" in template or "ipython" in template:
        return LLAMA3_JSON
    return HERMES


def template_renders_tools(chat_template: str | None) -> bool:
    """Whether the template itself writes the tools (it reads the `tools` variable)."""
    return chat_template is not None and "tools" in chat_template
