"""Text a request may carry: what UTF-8, and so protobuf, can encode."""

from shoal.router.errors import InvalidRequest


def check_text(name: str, text: str) -> None:
    """Refuses text with lone surrogates (JSON's "\\ud800"), which UTF-8, and so protobuf, cannot carry."""
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise InvalidRequest(
            name, f"Invalid '{name}': not valid Unicode text (a lone surrogate at position {error.start})."
        ) from None
