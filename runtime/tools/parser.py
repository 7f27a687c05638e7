"""Tool calls read out of a model's streamed text, one parser per generated choice.

`feed` takes each new piece of the output and splits it, as OpenAI streams tool calls, into plain content and
call deltas: a call's first delta carries its index, id and name, the later ones pieces of its arguments' JSON
text, which joined are exactly the value the model wrote. Text is held back only while it could still be the
start of a call, so the merged result never depends on how the output was cut into pieces.

A call is its format's header `{"name": "<name>", "arguments": ` (whitespace-tolerant), a JSON value (complete
once `json.JSONDecoder.raw_decode` accepts it), then the call's closing syntax. Text that cannot be a header is
content; arguments that never become valid JSON keep their call open until the output ends.
"""

import json
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from shoal.runtime.tools.formats import ToolFormat

_ID_ALPHABET = string.ascii_letters + string.digits
_SPACE = " \t\n\r"  # JSON's whitespace
_DECODER = json.JSONDecoder()


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class CallDelta:
    """A piece of call `index`: its first delta has the id and name, later ones arguments text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ParsedDelta:
    content: str = ""
    calls: tuple[CallDelta, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.content and not self.calls


# A piece of call syntax: one of several literals (an empty one makes the piece optional), or _NAME, a JSON
# string. Whitespace may come before each piece.
_Piece = tuple[str, ...] | None
_NAME: _Piece = None


class _Scan(Enum):
    MATCH = "match"
    PARTIAL = "partial"  # the text so far is a prefix of a match
    FAIL = "fail"


class ToolCallParser:
    def __init__(self, tool_format: ToolFormat, call_id: Callable[[], str] = new_call_id):
        self.format = tool_format
        self._call_id = call_id
        opening: list[_Piece] = [(tool_format.lead_in, "")] if tool_format.lead_in else []
        opening += [(tool_format.trigger,)] if tool_format.trigger else []
        keys = tuple(json.dumps(key) for key in tool_format.arguments_keys)
        self._header_syntax: tuple[_Piece, ...] = (*opening, ("{",), ('"name"',), (":",), _NAME, (",",), keys, (":",))
        closer = tool_format.call_close.strip()
        self._close_syntax: tuple[_Piece, ...] = (("}",), (closer,)) if closer else (("}",),)
        self._separator_syntax: tuple[_Piece, ...] = ((tool_format.separator.strip(), ""),)
        # The state is the step that reads the next text. Without a trigger, a call can only start right at
        # the beginning of the output.
        self._step: Callable[[bool], bool] = self._read_text if tool_format.trigger else self._read_header
        self._buffer = ""  # text received but not yet decided on
        self._in_content = False  # whether content other than whitespace came since the last call
        self._held_space = ""  # whitespace since the last call, dropped if a call follows it directly
        self._arguments = ""  # the current call's arguments text so far, and how much of it was sent
        self._sent = 0
        self.num_calls = 0
        self._content: list[str] = []
        self._calls: list[CallDelta] = []

    def feed(self, text: str) -> ParsedDelta:
        self._buffer += text
        return self._advance(final=False)

    def finish(self) -> ParsedDelta:
        """The output has ended: what was held back is decided with no more text to come."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> ParsedDelta:
        while self._step(final):
            pass
        if final and not self.num_calls:  # an output of only whitespace is its content
            self._content.append(self._held_space)
            self._held_space = ""
        delta = ParsedDelta("".join(self._content), tuple(self._calls))
        self._content, self._calls = [], []
        return delta

    # Each step consumes what it can decide on and answers whether the step it leaves for should run now.

    def _read_text(self, final: bool) -> bool:
        """Content; where the format has a trigger, watching for it."""
        trigger = self.format.trigger
        start = self._buffer.find(trigger) if trigger else -1
        if start >= 0:
            self._emit_content(self._buffer[:start])
            self._buffer = self._buffer[start:]
            self._step = self._read_header
            return True
        keep = 0 if final or not trigger else _prefix_suffix_length(self._buffer, trigger)
        self._emit_content(self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _read_header(self, final: bool) -> bool:
        """A call may start here."""
        if not self._buffer:
            return False
        scan, end, name = _scan(self._buffer, self._header_syntax)
        if scan is _Scan.PARTIAL and not final:
            return False
        if scan is not _Scan.MATCH:  # not a call: its first character is content, the rest is read again
            self._emit_content(self._buffer[0])
            self._buffer = self._buffer[1:]
            self._step = self._read_text
            return True
        self._held_space, self._in_content = "", False
        self._emit_call(CallDelta(self.num_calls, id=self._call_id(), name=name))
        self.num_calls += 1
        self._buffer = self._buffer[end:]
        self._arguments, self._sent = "", 0
        self._step = self._read_arguments
        return True

    def _read_arguments(self, final: bool) -> bool:
        """Inside a call's arguments value."""
        if not self._arguments:  # the value starts at its first character
            self._buffer = self._buffer.lstrip(_SPACE)
        self._arguments += self._buffer
        self._buffer = ""
        end = _value_end(self._arguments, final)
        if end is None:  # still incomplete; trailing whitespace may turn out to follow the value
            if not final:
                self._send_arguments(len(self._arguments.rstrip(_SPACE)))
            return False
        self._send_arguments(end)
        self._buffer = self._arguments[end:]
        self._arguments = ""
        self._step = self._read_close
        return True

    def _read_close(self, final: bool) -> bool:
        """The call's syntax after its arguments."""
        scan, end, _ = _scan(self._buffer, self._close_syntax)
        if scan is _Scan.PARTIAL and not final:
            return False
        if scan is _Scan.MATCH:
            self._buffer = self._buffer[end:]
        elif scan is _Scan.PARTIAL:  # the output ended inside the call's closing syntax
            self._buffer = ""
        # On FAIL, what follows the arguments is not the call's syntax: it is read as what comes after the call.
        self._step = self._read_between
        return True

    def _read_between(self, final: bool) -> bool:
        """Whitespace and the separator after a call."""
        scan, end, _ = _scan(self._buffer, self._separator_syntax)
        end = _skip_space(self._buffer, end)
        if scan is _Scan.PARTIAL or end == len(self._buffer):
            if final:
                self._buffer = ""
            return False
        self._buffer = self._buffer[end:]
        self._step = self._read_text if self.format.trigger else self._read_header
        return True

    def _emit_content(self, text: str) -> None:
        if not self._in_content:
            if not text.strip():
                self._held_space += text
                return
            text, self._held_space, self._in_content = self._held_space + text, "", True
        self._content.append(text)

    def _emit_call(self, delta: CallDelta) -> None:
        last = self._calls[-1] if self._calls else None
        if last is not None and last.index == delta.index:  # one delta per call per feed
            delta = replace(last, arguments=last.arguments + delta.arguments)
            self._calls.pop()
        self._calls.append(delta)

    def _send_arguments(self, end: int) -> None:
        if end > self._sent:
            self._emit_call(CallDelta(self.num_calls - 1, arguments=self._arguments[self._sent : end]))
            self._sent = end


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _prefix_suffix_length(text: str, trigger: str) -> int:
    """The length of the longest end of `text` that is the start of `trigger` (but not all of it)."""
    for length in range(min(len(trigger) - 1, len(text)), 0, -1):
        if text.endswith(trigger[:length]):
            return length
    return 0


def _scan(text: str, pieces: Sequence[_Piece]) -> tuple[_Scan, int, str]:
    """Whether `text` starts with the pieces, where the match ends, and the name it holds."""
    pos, name = 0, ""
    for piece in pieces:
        pos = _skip_space(text, pos)
        if piece is _NAME:
            scan, end = _string_end(text, pos)
            if scan is not _Scan.MATCH:
                return scan, pos, name
            try:
                name = json.loads(text[pos:end])
            except ValueError:
                return _Scan.FAIL, pos, name
            pos = end
            continue
        rest = text[pos:]
        if any(len(literal) > len(rest) and literal.startswith(rest) for literal in piece):
            return _Scan.PARTIAL, pos, name
        matched = [len(literal) for literal in piece if rest.startswith(literal)]
        if not matched:
            return _Scan.FAIL, pos, name
        pos += max(matched)
    return _Scan.MATCH, pos, name


def _string_end(text: str, pos: int) -> tuple[_Scan, int]:
    """Where the JSON string starting at `pos` ends (after its closing quote)."""
    if pos == len(text):
        return _Scan.PARTIAL, pos
    if text[pos] != '"':
        return _Scan.FAIL, pos
    pos += 1
    while pos < len(text):
        if text[pos] == '"':
            return _Scan.MATCH, pos + 1
        if text[pos] < " ":  # JSON strings hold no raw control characters
            return _Scan.FAIL, pos
        pos += 2 if text[pos] == "\\" else 1
    return _Scan.PARTIAL, pos


def _value_end(text: str, final: bool) -> int | None:
    """Where the JSON value that `text` starts with ends, once it is complete."""
    try:
        _, end = _DECODER.raw_decode(text)
    except ValueError:
        return None
    # A number is complete only once something follows that cannot continue it: "12" may become "12.5e3".
    if not final and text[0] in "-0123456789" and text[end : end + 1] in ("", ".", "e", "E"):
        return None
    return end
