"""Bad values for every field of an OpenAI request body, as hypothesis strategies: what a client may
send (huge and negative integers, NaN and infinities, lone surrogates, wrong types, oversized lists),
so parsing, the HTTP API and the gRPC API can be shown to refuse each with a 400 naming the field."""

from hypothesis import strategies as st

INT32_MAX = 2**31 - 1
SURROGATE = st.sampled_from(["\ud800", "\udfff", "ok\udc80", "\ud83d"])  # lone halves; JSON "\ud800" gives them
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
WRONG_TYPES = st.one_of(st.booleans(), st.just([]), st.just({}), st.just({"a": 1}), st.text(max_size=5))
NOT_A_NUMBER = st.one_of(st.booleans(), st.just([]), st.just({}), st.text(max_size=5))
NOT_A_STRING = st.one_of(st.booleans(), st.integers(), st.just([1]), st.just({}), st.floats(allow_nan=False))


def integers_outside(minimum: int, maximum: int = INT32_MAX):
    """Integers below minimum or above maximum (big ones too), non-integral numbers, wrong types."""
    low = st.integers(max_value=minimum - 1) | st.just(-(2**64))
    big = st.sampled_from([2**31, 2**32, 2**63, 10**30]).filter(lambda v: v > maximum)
    high = st.integers(min_value=maximum + 1) | big
    return st.one_of(low, high, NON_FINITE, st.sampled_from([1.5, -0.5, 1e300]), NOT_A_NUMBER)


def numbers_outside(minimum: float | None, maximum: float | None, above: float | None = None):
    outside = [NON_FINITE, NOT_A_NUMBER, st.just(10**400)]
    if minimum is not None:
        outside.append(st.floats(max_value=minimum, allow_nan=False).filter(lambda v: v < minimum))
    if above is not None:
        outside.append(st.floats(max_value=above, allow_nan=False).filter(lambda v: v <= above))
    if maximum is not None:
        outside.append(st.floats(min_value=maximum, allow_nan=False).filter(lambda v: v > maximum))
    return st.one_of(*outside)


def texts_with_a_surrogate():
    return st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), SURROGATE, st.text(max_size=5))


STOP = st.one_of(
    texts_with_a_surrogate(),
    st.lists(st.text(min_size=1, max_size=3), min_size=5, max_size=50),  # over the 4 allowed
    st.lists(st.just(""), min_size=1, max_size=2),
    st.lists(texts_with_a_surrogate(), min_size=1, max_size=3),
    st.lists(NOT_A_STRING, min_size=1, max_size=3),
    st.integers(),
    st.just({}),
)

# Fields both endpoints read the same way -> bad values; the error's param is the field.
SAMPLING = {
    "temperature": numbers_outside(0, 2),
    "top_p": numbers_outside(None, 1, above=0),
    "presence_penalty": numbers_outside(-2, 2),
    "frequency_penalty": numbers_outside(-2, 2),
    "min_p": numbers_outside(0, 1),
    "repetition_penalty": numbers_outside(None, None, above=0),
    "top_k": integers_outside(-1),
    "seed": integers_outside(-(2**63), 2**63 - 1),
    "max_tokens": integers_outside(1),
    "n": integers_outside(1, INT32_MAX),
    "stop": STOP,
    "stop_token_ids": st.one_of(
        st.lists(integers_outside(0), min_size=1, max_size=3), st.integers(), st.just("1"), st.just([True])
    ),
    "ignore_eos": WRONG_TYPES.filter(lambda v: not isinstance(v, bool)),
    "skip_special_tokens": WRONG_TYPES.filter(lambda v: not isinstance(v, bool)),
    "stream": WRONG_TYPES.filter(lambda v: not isinstance(v, bool)),
    "user": st.one_of(texts_with_a_surrogate(), NOT_A_STRING),
    "service_tier": st.one_of(texts_with_a_surrogate(), NOT_A_STRING),
    "model": st.one_of(texts_with_a_surrogate(), NOT_A_STRING),
    "priority": st.one_of(NON_FINITE, NOT_A_NUMBER, st.just(1.5)),
}
CHAT = {
    **SAMPLING,
    "max_completion_tokens": integers_outside(1),
    "top_logprobs": integers_outside(0, 20),
    "logprobs": WRONG_TYPES.filter(lambda v: not isinstance(v, bool)),
}
COMPLETIONS = {**SAMPLING, "logprobs": integers_outside(0, 20)}

# Bad messages -> the param they must be refused with.
MESSAGES = st.one_of(
    st.tuples(
        st.builds(lambda c: [{"role": "user", "content": c}], texts_with_a_surrogate()), st.just("messages[0].content")
    ),
    st.tuples(
        st.builds(lambda c: [{"role": "user", "content": [{"type": "text", "text": c}]}], texts_with_a_surrogate()),
        st.just("messages[0].content"),
    ),
    st.tuples(
        st.builds(
            lambda r: [{"role": "user", "content": "x"}, {"role": r, "content": "y"}],
            st.text(max_size=8).filter(lambda r: r not in ("system", "developer", "user", "assistant", "tool"))
            | texts_with_a_surrogate(),
        ),
        st.just("messages[1].role"),
    ),
    st.tuples(st.builds(lambda r: [{"role": r, "content": "x"}], NOT_A_STRING), st.just("messages[0].role")),
    st.tuples(
        st.builds(lambda c: [{"role": "user", "content": c}], st.one_of(st.integers(), st.just({}))),
        st.just("messages[0].content"),
    ),
    st.tuples(st.sampled_from([[], "hi", {}, 3]), st.just("messages")),
)
# Bad completion prompts (all refused as `prompt`).
PROMPTS = st.one_of(
    texts_with_a_surrogate(),
    st.lists(texts_with_a_surrogate(), min_size=1, max_size=1),
    st.lists(st.integers(min_value=0, max_value=INT32_MAX), min_size=1, max_size=4).map(lambda ids: [*ids, 2**31]),
    st.lists(st.integers(max_value=-1), min_size=1, max_size=3),
    st.just([]),
    st.just([[]]),
    st.just([1, "a"]),
    st.just([True]),
    st.just({}),
    st.floats(),
)
