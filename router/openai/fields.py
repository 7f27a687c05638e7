"""Reading one JSON request body field by field, with OpenAI's error messages (400, `param` set).

Every field must be known: supported ones are read with their type, and with their range where
the caller gives one (a request's sampling values get theirs in request.validated); ones the router
accepts only at their do-nothing value (`logit_bias: {}`, `tools: []`, ...) are checked to be so;
anything else is refused as OpenAI does ("Unrecognized request argument supplied: X").
"""

import contextlib
import math

from shoal.router.errors import InvalidRequest
from shoal.router.request import Limit
from shoal.router.text import check_text

_MISSING = object()


class Body:
    def __init__(self, data: object):
        if not isinstance(data, dict):
            raise InvalidRequest(None, "The request body must be a JSON object.")
        self.data = data
        self._read: set[str] = set()

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str):
        self._read.add(name)
        return self.data.get(name)

    def string(self, name: str, default=_MISSING, choices: tuple[str, ...] | None = None) -> str | None:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, str):
            raise _type_error(name, value, "a string")
        check_text(name, value)
        if choices is not None and value not in choices:
            raise InvalidRequest(
                name, f"Invalid value for '{name}': expected one of {', '.join(choices)}, got {value!r}."
            )
        return value

    def boolean(self, name: str, default=_MISSING) -> bool | None:
        value = self._get(name, default)
        if value is not default and not isinstance(value, bool):
            raise _type_error(name, value, "a boolean")
        return value

    def integer(
        self, name: str, default=_MISSING, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(name, value, "an integer")
        Limit(minimum, maximum).check(name, value)
        return value

    def number(
        self, name: str, default=_MISSING, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _type_error(name, value, "a number")
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if minimum is not None or maximum is not None:  # else the caller checks it (request.validated)
            Limit(minimum, maximum).check(name, number)
        return number

    def int_list(self, name: str) -> list[int] | None:
        value = self._get(name, None)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise _type_error(name, value, "an array of integers")
        return value

    def strings(self, name: str) -> list[str] | None:
        """A string or an array of strings (`stop`), as a list."""
        value = self._get(name, None)
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _type_error(name, value, "a string or an array of strings")
        return values

    def no_op(self, name: str, *allowed) -> None:
        """A field the router accepts only at a value that asks for nothing it lacks."""
        value = self.raw(name)
        if value is not None and value not in allowed:
            raise InvalidRequest(
                name, f"'{name}' is not supported by this server (only {', '.join(map(repr, allowed))})."
            )

    def ignored(self, *names: str) -> None:
        """Fields that change nothing here (metadata, parallel_tool_calls, ...)."""
        self._read.update(names)

    def done(self) -> None:
        for name in self.data:
            if name not in self._read:
                raise InvalidRequest(name, f"Unrecognized request argument supplied: {name}")

    def _get(self, name: str, default):
        self._read.add(name)
        value = self.data.get(name)
        if value is None:
            if default is _MISSING:
                raise InvalidRequest(name, f"Missing required parameter: '{name}'.")
            return default
        return value


@contextlib.contextmanager
def prefixed(prefix: str):
    """Names a nested object's fields with their parent's path (`messages[0].role`)."""
    try:
        yield
    except InvalidRequest as error:
        raise InvalidRequest(prefix + (error.param or ""), error.message) from None


def _type_error(name: str, value, expected: str) -> InvalidRequest:
    return InvalidRequest(name, f"Invalid type for '{name}': expected {expected}, but got {_json_type(value)} instead.")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
