"""The metric names a PromQL expression reads, found by a small tokenizer (promtool 2.42 has no
command that prints a parsed query). It knows the PromQL that names things other than metrics:
strings, label matchers, ranges, durations and numbers, function and aggregation calls, keywords,
and the label lists after by/without/on/ignoring/group_left/group_right."""

import re

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<matchers>\{(?:[^}"'`]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)*\})
    | (?P<range>\[[^\]]*\])
    | (?P<number>\d[\w.]*)
    | (?P<name>[A-Za-z_:][\w:]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)
_LABEL_LIST_BEFORE = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST_BEFORE | {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}


def _calls(following: str | None) -> bool:
    """A name followed by these is a function or an aggregation (`sum by (pool) (...)`)."""
    return following is not None and (following == "(" or following.lower() in ("by", "without"))


def metric_names(expr: str) -> set[str]:
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"]
    names = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "name" and text.lower() in _LABEL_LIST_BEFORE and following == "(":
            i = tokens.index(("other", ")"), i)  # a label list holds label names, never parentheses
        elif kind == "name" and text.lower() not in _KEYWORDS and not _calls(following):
            names.add(text)
        i += 1
    return names
