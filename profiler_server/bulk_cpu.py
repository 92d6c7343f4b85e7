"""The CPU-bound preparation of large requests, one at a time per worker process.

Parsing and validating a 20,000-result body, checking its keys' grammar and converting its rows take ~0.6 s of
CPU, all of it holding the GIL. When seven uploads prepared at once, the thread holding SQLite's write lock got a
seventh of the interpreter and its 0.3 s transaction took up to 1.3 s, which every other writer then waited for
(issue 25: a 1-row PUT /devices behind concurrent uploads). The GIL runs one thread at a time anyway: preparing one
large request at a time costs the uploads nothing in all, and leaves the lock holder (and small requests) half of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Bodies or batches at least this large take a turn (a 1-row PUT never waits for one).
BULK_BYTES = 256 * 1024
BULK_ITEMS = 1_000
_TURN = threading.Lock()


@contextmanager
def bulk_turn(large: bool = True) -> Iterator[None]:
    """Run the block alone among large requests' preparations when ``large``; at once otherwise."""
    if not large:
        yield
        return
    with _TURN:
        yield
