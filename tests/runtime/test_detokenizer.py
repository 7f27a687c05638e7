"""Incremental detokenization: deltas add up to the full decode and never split a character."""

import pytest

from shoal.runtime.tokenization.detokenizer import IncrementalDetokenizer

TEXTS = [
    "héllo 😀 日本語のテキスト and emoji 🧑‍🚀🚀!",
    " leading spaces  and   runs of spaces\nnew lines\ttabs",
    "Привет, мир! Ελληνικά. العربية",
]


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_concatenate_to_the_full_decode_without_replacement_characters(smollm_tokenizer, text):
    prompt = smollm_tokenizer.encode("Say something:")
    tokens = smollm_tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(smollm_tokenizer, prompt, skip_special_tokens=True)
    deltas = [detok.add(t) for t in tokens] + [detok.flush()]
    assert "".join(deltas) == smollm_tokenizer.decode(tokens)
    assert all("\ufffd" not in d for d in deltas)
    if not text.isascii():
        assert any(d == "" for d in deltas[:-1])  # some token ended inside a multi-byte character


def test_a_cut_multibyte_character_is_held_back_until_complete(smollm_tokenizer):
    tokens = smollm_tokenizer.encode("😀", add_special_tokens=False)
    assert len(tokens) > 1
    detok = IncrementalDetokenizer(smollm_tokenizer, [], skip_special_tokens=True)
    assert [detok.add(t) for t in tokens[:-1]] == [""] * (len(tokens) - 1)
    assert detok.add(tokens[-1]) == "😀"


def test_special_tokens_are_skipped_or_kept_as_asked(smollm_tokenizer):
    end = smollm_tokenizer.convert_tokens_to_ids("<|im_end|>")
    words = smollm_tokenizer.encode(" done", add_special_tokens=False)
    skip = IncrementalDetokenizer(smollm_tokenizer, [], skip_special_tokens=True)
    keep = IncrementalDetokenizer(smollm_tokenizer, [], skip_special_tokens=False)
    assert "".join(skip.add(t) for t in words + [end]) == " done"
    assert "".join(keep.add(t) for t in words + [end]) == " done<|im_end|>"


def test_partial_character_at_the_end_is_flushed_as_a_replacement_character(smollm_tokenizer):
    tokens = smollm_tokenizer.encode("😀", add_special_tokens=False)
    detok = IncrementalDetokenizer(smollm_tokenizer, [], skip_special_tokens=True)
    for t in tokens[:-1]:
        detok.add(t)
    assert detok.flush().endswith("\ufffd")
