"""Canary split: which revision of a pool one request goes to.

Without a session key each request draws at random, so the canary gets `canary_weight` percent of
requests. With a key (a conversation or user id) the draw is a hash of the key, so one session stays
on one revision; raising the weight only moves sessions from stable to canary, never back and forth.
"""

import hashlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    stable: str
    canary: str | None = None
    canary_weight: float = 0.0  # percent, [0, 100]

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise ValueError(f"canary_weight must be in [0, 100], got {self.canary_weight}")
        if self.canary is not None and self.canary == self.stable:
            raise ValueError(f"canary must differ from stable ({self.stable!r})")

    @property
    def stable_weight(self) -> float:
        return 100.0 - self.effective_canary_weight

    @property
    def effective_canary_weight(self) -> float:
        return self.canary_weight if self.canary is not None else 0.0

    def choose(self, session_key: str | None, rng: random.Random) -> str:
        if self.canary is None or self.canary_weight <= 0:
            return self.stable
        point = session_point(self.canary, session_key) if session_key else rng.random() * 100
        return self.canary if point < self.canary_weight else self.stable


def session_point(canary: str, session_key: str) -> float:
    """Where a session falls in [0, 100); salted with the canary's name so each rollout draws anew."""
    digest = hashlib.blake2b(f"{canary}\0{session_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100
