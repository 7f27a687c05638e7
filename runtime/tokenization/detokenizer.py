"""Incremental detokenization that never emits a broken UTF-8 character.

Decoding tokens one by one is wrong twice over: a multi-byte character can span tokens, and how a
token renders (a leading space, say) depends on the tokens before it. So each step decodes a short
window of recent tokens, with and without the new ones, and emits only the difference, holding
it back while it ends in the replacement character of an unfinished byte sequence (the method of
HF text-generation-inference and vLLM).
"""

from transformers import PreTrainedTokenizerBase

# Prompt tokens kept as left context for the first decoded output token (vLLM uses 5 as well).
_INITIAL_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_token_ids: list[int], skip_special_tokens: bool):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.token_ids = list(prompt_token_ids[-_INITIAL_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.token_ids)
        self.text = ""

    def add(self, token_id: int) -> str:
        """Appends one token; returns the text it completes (often "", while a character is split)."""
        self.token_ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end: whatever is still held back, an unfinished byte sequence rendered as U+FFFD."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        prefix = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.token_ids[self.prefix_offset :])
        if len(full) <= len(prefix) or (full.endswith("\ufffd") and not final):
            return ""
        new_text = full[len(prefix) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.token_ids)
        self.text += new_text
        return new_text

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=self.skip_special_tokens)
