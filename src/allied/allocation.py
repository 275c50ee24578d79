"""Fewer runs of Python's cycle collector while bulk work runs. One home for the rule.

An import or a sync allocates dicts and lists by the million that live for a batch or a
page and form no cycles; the collector, run by default every 700 allocations, would scan
them over and over (a tenth to a fifth of the work). The threshold is the process's: bulk
jobs running together (a sync beside an import in ``allied serve``) share one raise, and the
last to end sets it back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: allocations between runs of the collector during bulk work (the default is 700)
RARE = 100_000

_lock = threading.Lock()
_running = 0  # bulk jobs under way in this process
_threshold: tuple[int, int, int] = (0, 0, 0)


@contextmanager
def rare_collections() -> Iterator[None]:
    global _running, _threshold
    with _lock:
        if _running == 0:
            _threshold = gc.get_threshold()
            gc.set_threshold(RARE, *_threshold[1:])
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_threshold)
