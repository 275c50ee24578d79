"""Admission of a peer's pages in a worker process, for long pulls.

A sync validates every object and verifies its signature (admission) while it stores the
page before (see :func:`allied.federation.sync._apply_pages`). In a thread, the two share
one interpreter lock: validation and canonical forms are Python, so admission and storing
take turns and a pull runs at the speed of their sum. A worker process admits beside the
storing thread instead. Starting one costs most of a second, so it is started only when a
pull turns out to have several pages, and used once it is ready: until then, and for the
short pulls of a continuous sync, pages are admitted in a thread as before.

The worker holds no private key: it gets the node's gate as :meth:`Origin.verifier`. It
sends back, per admitted object, its place in the page and what validation derived (version,
markings, references, JSON text); the node rebuilds the objects around the dicts of the page
it already holds, rather than parsing each one again.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import MappingProxyType
from typing import Any

from allied.errors import AlliedError
from allied.ingest.envelope import Admission, Outcome, admit_objects
from allied.integrity.origin import Origin
from allied.stix.model import StixObject

_lock = threading.Lock()
_PARENT_CHECK = 0.5  # seconds between the worker's looks at its parent
#: seconds a page may take in the worker before it counts as stalled (a page takes well
#: under one): the worker is then killed and the pull fails (:class:`Stalled`)
ADMIT_TIMEOUT = 120.0


class Stalled(AlliedError):
    """A page the worker did not admit within :data:`ADMIT_TIMEOUT`. The pull fails rather
    than admit the page in the node's process: a page that makes admission hang would hang
    the node there, with no one to time it out. The next sync starts a new worker."""


_pool: ProcessPoolExecutor | None = None


def _watch(parent: int) -> None:
    """In the worker: leave when the node's process is gone. A killed parent does not close
    the worker's queue (the worker holds both ends), so it would wait for pages for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ready() -> bool:
    """Nothing: done once the worker has started and imported what admission needs."""
    return True


#: per admitted object: its place in the page, version, markings, references, JSON text
Derived = tuple[int, str, tuple[str, ...], tuple[str, ...], str]


def _admit(
    objects: Sequence[Any], verifier: Origin, partner: str
) -> tuple[list[Derived], list[Outcome]]:
    done = admit_objects(objects, verifier, partner=partner, posted=False)
    derived = [
        (place, obj.version, obj.marking_refs, obj.refs, obj.json)
        for place, obj in zip(done.positions, done.admitted, strict=True)
    ]
    return derived, done.failures


class Admitting:
    """A page being admitted by the worker; :meth:`result` waits for it."""

    def __init__(
        self,
        future: Future[tuple[list[Derived], list[Outcome]]],
        objects: Sequence[Any],
        pool: ProcessPoolExecutor,
    ):
        self._future = future
        self._objects = objects
        self._pool = pool
        # the worker processes as they are now: a pool shut down meanwhile no longer lists
        # them, and a stalled one must still be killed
        self._processes = list(dict(getattr(pool, "_processes", None) or {}).values())

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> Admission:
        """The page's admission; BrokenProcessPool if the worker died meanwhile (the caller
        admits the page itself), :class:`Stalled` if it gave no answer within
        :data:`ADMIT_TIMEOUT` (it is killed). A page a node pulls is never re-signed, so
        each admitted object is the page's dict as sent."""
        try:
            derived, failures = self._future.result(timeout=ADMIT_TIMEOUT)
        except TimeoutError:
            _abandon(self._pool, self._processes)
            raise Stalled(
                f"a page was not admitted within {ADMIT_TIMEOUT:g} s: the admission worker "
                "was stopped, and the pull goes on at the next sync"
            ) from None
        except CancelledError:  # queued behind a page whose worker was abandoned
            raise BrokenProcessPool("the admission worker was abandoned") from None
        admitted = []
        for place, version, markings, refs, text in derived:
            data = self._objects[place]
            admitted.append(
                StixObject(
                    data["id"],
                    data["type"],
                    version,
                    data.get("created_by_ref"),
                    markings,
                    refs,
                    MappingProxyType(data),
                    text,
                )
            )
        return Admission(admitted, failures, [d[0] for d in derived])


def start() -> Future[bool]:
    """Start the worker (once per process) if it is not running; the future is done when it
    can take pages, and fails if it could not start."""
    global _pool
    with _lock:
        if _pool is not None and _is_broken(_pool):
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
        if _pool is None:
            # spawned, not forked: the node's process runs threads (HTTP, sync, fetches)
            # whose locks a fork would copy mid-use
            workers = max(1, (os.cpu_count() or 2) - 1)
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_watch,
                initargs=(os.getpid(),),
            )
        try:
            return _pool.submit(_ready)
        except (BrokenProcessPool, RuntimeError, OSError) as error:
            _pool = None
            failed: Future[bool] = Future()
            failed.set_exception(error)
            return failed


def admit(objects: Sequence[Any], verifier: Origin, partner: str) -> Admitting | None:
    """Admit a page in the worker started by :func:`start`; None if it is not running (it
    died: the caller admits the page itself, and the next :func:`start` begins anew)."""
    global _pool
    with _lock:
        if _pool is None:
            return None
        pool = _pool
        try:
            return Admitting(pool.submit(_admit, objects, verifier, partner), objects, pool)
        except (BrokenProcessPool, RuntimeError, OSError):
            # broken, shut down, or out of pipes or processes: this page is admitted here,
            # and the next start() begins anew
            pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
            return None


def forget_broken() -> None:
    """Drop a worker pool that broke, so that the next pull starts a new one."""
    global _pool
    with _lock:
        if _pool is not None and _is_broken(_pool):
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def _abandon(pool: ProcessPoolExecutor, processes: Sequence[Any]) -> None:
    """Kill a stalled worker (a hung one would hold a core and never answer again) and
    forget its pool, so that the next pull starts a new one. ``processes``: the pool's, as
    they were when the page was sent (the executor has no public way to kill them)."""
    global _pool
    with _lock:
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        if _pool is pool:
            _pool = None


def _is_broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))
