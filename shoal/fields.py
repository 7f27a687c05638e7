"""Reading a nested mapping (a ModelPool spec, the router's config file, a route pushed over the admin
API) field by field, once, at the edge: each value checked for its type and bounds, the keys never
read reported as unknown, and every error naming the field's path and what it may be.

The caller picks the error class (SpecError, ConfigError), so each side keeps its own exception
while the wording is the same everywhere.
"""

import json
import math

_REQUIRED = object()


class FieldError(ValueError):
    """A value is missing or wrong; the message starts with the field's path."""


class Fields:
    """One mapping, read field by field; remembers which keys were read so unknown ones are reported."""

    def __init__(self, data, path: str = "", error: type[FieldError] = FieldError):
        self.error = error
        if not isinstance(data, dict):
            raise error(f"{path or 'config'}: must be a mapping, got {_show(data)}")
        self.data, self.path, self._read = data, path, set()

    def name(self, key: str) -> str:
        """The path of one of its fields (`spec.runtime.maxNumSeqs`; `canary` at the top)."""
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind, default=_REQUIRED, *, minimum=None, maximum=None, choices=None):
        """The value, or `default` when absent or null; without a default the field is required."""
        self._read.add(key)
        value = self.data.get(key)
        if value is None:
            if default is _REQUIRED:
                raise self.error(f"{self.name(key)}: required")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise self.error(f"{self.name(key)}: must be {' or '.join(k.__name__ for k in kinds)}, got {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(f"{self.name(key)}: must be a finite number, got {value}")
        if choices is not None and value not in choices:
            raise self.error(f"{self.name(key)}: must be one of {', '.join(map(str, choices))}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"{self.name(key)}: must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(f"{self.name(key)}: must be <= {maximum}, got {value}")
        return value

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def sub(self, key: str, required: bool = False) -> "Fields":
        return Fields(self.get(key, dict, _REQUIRED if required else {}), self.name(key), self.error)

    def items(self, key: str, required: bool = False) -> list["Fields"]:
        values = self.get(key, list, _REQUIRED if required else [])
        if required and not values:
            raise self.error(f"{self.name(key)}: must list at least one")
        return [Fields(v, f"{self.name(key)}[{i}]", self.error) for i, v in enumerate(values)]

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{self.name(key)}[{i}]: must be str, got {_show(value)}")
        return values

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise self.error(f"{self.name(unknown[0])}: unknown field (known: {', '.join(sorted(self._read))})")


def _show(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
