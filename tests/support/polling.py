"""Waiting for the test cluster's controllers, which act on their own schedule."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    read: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 10, what: str = "the condition"
) -> T:
    """Read until the value is accepted; the accepted value. AssertionError (with the last value)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s; last seen: {value!r}")
        await asyncio.sleep(0.1)
