"""Prompt lookup (n-gram) drafting: the tokens that followed the latest earlier occurrence of the
sequence's last n tokens, longest n first. No model: strong where outputs repeat their input
(summaries, code edits, retrieval answers), worthless elsewhere, which the acceptance backoff notices.

The search runs in C: tokens as fixed-width bytes, `bytes.rfind`, with matches at an offset that is
not a token boundary skipped.
"""

from array import array

_WIDTH = array("i").itemsize


def propose(token_ids: list[int], k: int, min_n: int, max_n: int) -> list[int]:
    """Up to k draft tokens; [] when no suffix of length min_n..max_n occurred before."""
    if len(token_ids) < min_n + 1 or k < 1:
        return []
    data = array("i", token_ids).tobytes()
    for n in range(min(max_n, len(token_ids) - 1), min_n - 1, -1):
        pattern = data[-n * _WIDTH :]
        end = len(data) - _WIDTH  # the match must end before the last token: it is the suffix itself
        while True:
            at = data.rfind(pattern, 0, end)
            if at < 0:
                break
            if at % _WIDTH == 0:
                start = at // _WIDTH + n
                return token_ids[start : start + k]
            end = at + len(pattern) - 1
    return []
