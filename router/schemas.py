"""A JSON Schema a request carries (a structured output's, a tool's parameters) must be one: JSON,
an object, and valid against its own metaschema, as OpenAI checks before it compiles."""

import json

import jsonschema

from shoal.router.errors import InvalidRequest
from shoal.router.text import check_text


def check_json_schema(field: str, text: str) -> None:
    check_text(field, text)
    try:
        schema = json.loads(text)
        if not isinstance(schema, dict):
            raise InvalidRequest(field, f"Invalid '{field}': expected a JSON Schema object.")
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except ValueError as error:
        raise InvalidRequest(field, f"Invalid '{field}': not JSON ({error}).") from None
    except jsonschema.SchemaError as error:
        raise InvalidRequest(field, f"Invalid JSON schema for '{field}': {error.message}.") from None
    except RecursionError:  # nested deeper than the parser or checker can follow; no real schema is
        raise InvalidRequest(field, f"Invalid JSON schema for '{field}': nested too deeply.") from None
