"""Typed errors of the search, sampling and training commands → one line on stderr, exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from search.commands._errors import fail, user_errors


@contextmanager
def dnas_errors() -> Iterator[None]:
    """Like ``user_errors`` and also the data, search, loss, sampling and training errors."""
    from search.data import DataError
    from search.loss import LossDomainError
    from search.sample import SampleError
    from search.search_config import SearchConfigError
    from search.train import TrainError

    with user_errors():
        try:
            yield
        except (DataError, SearchConfigError, LossDomainError, SampleError, TrainError) as exc:
            raise fail(str(exc).replace("\n", " ")) from None
