"""A forced tool choice -> the structural tag (xgrammar) its output must follow.

`required`: one or more calls (exactly one without parallel calls), each of one of the tools, in
the model family's own syntax and with arguments that match that tool's JSON Schema; `named`: one
call of the named tool. Nothing else may be written, so the grammar ends the request once the
calls are complete.
"""

import xgrammar as xgr

from shoal.runtime.structured.spec import STRUCTURAL_TAG, StructuredOutput
from shoal.runtime.tools.formats import ToolFormat
from shoal.runtime.tools.spec import NAMED, ToolChoice

ANY_OBJECT = {"type": "object"}
# Left free, a small model spends tokens indenting the arguments, and may never stop.
MAX_WHITESPACE = 1


def forced_calls(choice: ToolChoice, tool_format: ToolFormat) -> StructuredOutput:
    tags = [
        xgr.structural_tag.TagFormat(
            begin=tool_format.begin(tool.name),
            content=xgr.structural_tag.JSONSchemaFormat(
                json_schema=tool.parameters or ANY_OBJECT, max_whitespace_cnt=MAX_WHITESPACE
            ),
            end=tool_format.end,
        )
        for tool in choice.callable_tools()
    ]
    if choice.mode == NAMED:
        output = tags[0]
    else:
        output = xgr.structural_tag.TagsWithSeparatorFormat(
            tags=tags, separator=tool_format.separator, at_least_one=True, stop_after_first=not choice.parallel
        )
    return StructuredOutput(STRUCTURAL_TAG, xgr.StructuralTag(format=output).model_dump_json())
