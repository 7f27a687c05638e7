"""Compiles a request's StructuredOutput into an xgrammar CompiledGrammar for this model's vocabulary.

xgrammar (what vLLM and SGLang use) precomputes, per grammar state, which tokens of the vocabulary
can follow, so the mask of each step costs microseconds. Compiling a JSON schema takes milliseconds
to tens of them: it runs off the engine thread (AsyncEngine compiles before it queues the request)
and xgrammar's compiler caches each grammar by its text, so a schema many requests share is compiled
once. A grammar that cannot be compiled is the client's error, named by its field.
"""

import re
import time
from collections.abc import Iterable

import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.structured.spec import GRAMMAR, JSON_OBJECT, JSON_SCHEMA, REGEX, STRUCTURAL_TAG, StructuredOutput

# Compiling uses the compiler's own threads; the cache is bounded so that clients sending ever new
# schemas cannot grow it without end.
COMPILER_THREADS = 4
CACHE_LIMIT_BYTES = 256 << 20
ANY_OBJECT = '{"type": "object"}'


class GrammarCompiler:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_token_ids: Iterable[int]):
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids))
        self._compiler = xgr.GrammarCompiler(info, max_threads=COMPILER_THREADS, cache_limit_bytes=CACHE_LIMIT_BYTES)
        self.vocab_size = vocab_size

    def compile(self, spec: StructuredOutput) -> tuple[xgr.CompiledGrammar, float]:
        """The compiled grammar and the seconds it took; raises InvalidRequestError."""
        started = time.perf_counter()
        try:
            if spec.kind == JSON_SCHEMA:
                compiled = self._compiler.compile_json_schema(spec.value, any_whitespace=False)
            elif spec.kind == JSON_OBJECT:  # OpenAI's json_object: an object, not any JSON value
                compiled = self._compiler.compile_json_schema(ANY_OBJECT, any_whitespace=False)
            elif spec.kind == REGEX:
                compiled = self._compiler.compile_regex(spec.value)
            elif spec.kind == STRUCTURAL_TAG:
                compiled = self._compiler.compile_structural_tag(spec.value)
            else:
                assert spec.kind == GRAMMAR
                compiled = self._compiler.compile_grammar(spec.value)
        except (RuntimeError, ValueError, TypeError) as error:  # xgrammar's parse and schema errors
            raise InvalidRequestError(f"sampling.structured.{spec.kind}", _first_line(error)) from None
        return compiled, time.perf_counter() - started


def _first_line(error: Exception) -> str:
    """xgrammar's message without its log prefix (`[12:00:00] /project/cpp/x.cc:94: `)."""
    text = str(error).strip() or type(error).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text.splitlines()[0])[:500]
