"""A tampering relay between two nodes, on 127.0.0.1: it forwards every request to the real
peer and lets a test rewrite the objects of the pages on the way (the drills' relay, given
the test's own rewrite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from allied.exercise.relay import Relay

Tamper = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@contextmanager
def relay(upstream: str, tamper: Tamper) -> Iterator[str]:
    """A relay to ``upstream`` (a node's base URL) that passes every page's objects through
    ``tamper``; yields its own base URL."""
    used = Relay("puller", "source", upstream, clock=lambda: 0.0, rewrite=tamper)
    used.start()
    try:
        yield used.url
    finally:
        used.stop()
