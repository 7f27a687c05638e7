"""Loading the model's tokenizer and turning prompts (text or chat messages) into token ids."""

from pathlib import Path

from jinja2 import TemplateError
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.tools.rendering import ChatTemplateInput

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer beside the weights, or None where there is none (a random-weight config)."""
    if not any((directory / name).exists() for name in _TOKENIZER_FILES):
        return None
    return AutoTokenizer.from_pretrained(str(directory))


def encode_text(tokenizer: PreTrainedTokenizerBase | None, text: str) -> list[int]:
    if tokenizer is None:
        raise InvalidRequestError("prompt.text", "this model has no tokenizer; send prompt token_ids")
    return tokenizer.encode(text)


def encode_chat(tokenizer: PreTrainedTokenizerBase | None, chat: ChatTemplateInput) -> list[int]:
    """Renders messages (and tools) with the model's chat template, the assistant's turn opened."""
    if tokenizer is None or not tokenizer.chat_template:
        raise InvalidRequestError("prompt.chat", "this model has no chat template; send text or token_ids")
    if not chat.messages:
        raise InvalidRequestError("prompt.chat.messages", "must not be empty")
    try:
        text = tokenizer.apply_chat_template(
            chat.messages, tools=chat.tools, add_generation_prompt=True, tokenize=False
        )
    except (TemplateError, ValueError) as error:  # the template rejects these messages (roles, order)
        raise InvalidRequestError("prompt.chat.messages", f"the chat template refused them: {error}") from None
    # The template already holds the special tokens; encoding must not add a second BOS.
    return tokenizer.encode(text, add_special_tokens=False)


def eos_token_ids(tokenizer: PreTrainedTokenizerBase | None, config_eos: tuple[int, ...]) -> tuple[int, ...]:
    ids = set(config_eos)
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return tuple(sorted(ids))
