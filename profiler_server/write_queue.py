"""SQLite's write lock handed out in order within a worker process: small writes first, then bulk ones, each in turn.

SQLite has one write lock for the whole database, and a writer that finds it taken does not queue: its busy handler
sleeps (up to 100 ms at a time) and tries again, so whoever happens to try when the lock is free wins. Under seven
concurrent 20,000-result uploads the lock was held ~70% of the time (each upload: ten operator-dictionary
transactions and one of its rows, up to 0.8 s), and a 1-row ``PUT /devices`` lost that race again and again: it
waited up to 4.3 s for the lock (issue 25; ``sqlite_put_p99_during_uploads_ms`` 4.1 s). Here the writers of one
process wait in a queue instead: a small write waits at most for the transaction that holds the lock and the small
ones before it, never for the bulk writes queued meanwhile. Bulk writes (uploads, imports, job creation) go in
arrival order after the small ones. Several worker processes still meet at SQLite's lock; PostgreSQL, whose writers
lock rows, not the database, does not use this.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

SMALL, BULK = 0, 1
# As long as a writer waits for SQLite's lock itself (db.make_engine's busy timeout): then 503, as SQLite's "locked".
WAIT_S = 30.0


class WriteQueue:
    """A lock granted to the waiting writer of the lowest (priority, arrival), with a deadline per waiter."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # heap of (priority, ticket)
        self._held = False
        self._tickets = itertools.count()

    @property
    def waiting(self) -> int:
        """How many writers wait for their turn now."""
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def turn(self, priority: int, wait_s: float = WAIT_S) -> Iterator[None]:
        """Hold the queue's lock for the block; OperationalError ("database is locked") after ``wait_s``."""
        me = (priority, next(self._tickets))
        deadline = time.monotonic() + wait_s
        with self._cond:
            heapq.heappush(self._waiting, me)
            while self._held or self._waiting[0] != me:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._waiting.remove(me)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()  # the next in line may be free to go now
                    raise OperationalError(
                        "BEGIN IMMEDIATE", {}, Exception(f"database is locked (waited {wait_s:g} s in the write queue)")
                    )
                self._cond.wait(left)
            heapq.heappop(self._waiting)
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


_QUEUES: weakref.WeakKeyDictionary[Engine, WriteQueue] = weakref.WeakKeyDictionary()
_QUEUES_LOCK = threading.Lock()


def queue_of(engine: Engine) -> WriteQueue | None:
    """The write queue of a SQLite engine (one per engine in this process); None for PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return None
    with _QUEUES_LOCK:
        queue = _QUEUES.get(engine)
        if queue is None:
            queue = _QUEUES[engine] = WriteQueue()
        return queue
