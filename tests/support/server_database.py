"""What tests do to a server's database directly, whichever way the server runs (a process, or the app in-process):
migrate it and make tokens, add a token, end a lease, rewind a device's last poll."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

ROLES = ("admin", "agent", "client")


@contextmanager
def _session(database_url: str) -> Iterator[Session]:
    from profiler_server.db import make_engine, session_factory

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            yield session
            session.commit()
    finally:
        engine.dispose()


def prepare_database(database_url: str) -> dict[str, str]:
    """Upgrade the schema (alembic, as ``profiler-server db upgrade``) and create one token per role (``test-ROLE``)."""
    from profiler_server.auth import create_token
    from profiler_server.migrate import upgrade

    upgrade(database_url)
    with _session(database_url) as session:
        return {role: create_token(session, f"test-{role}", role) for role in ROLES}


def new_token(
    database_url: str, name: str, role: str, expires_days: float | None = None, devices: list[str] | None = None
) -> str:
    """Another token (a second agent, say), created in the server's database."""
    from profiler_server.auth import create_token

    with _session(database_url) as session:
        return create_token(session, name, role, expires_days=expires_days, devices=devices)


def end_lease(database_url: str, job_id: int) -> None:
    """Move job ``job_id``'s lease end into the past: what waiting out the lease does, without the wait.

    Tests that waited for a short lease raced the machine's load (a 0.3 s sleep that took 0.7 s let
    another agent in); the server compares the stored lease end with its clock, so this is the same event.
    """
    from sqlalchemy import update

    from profiler_server.models import Job, utcnow

    with _session(database_url) as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_expires_at.is_not(None))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        assert done.rowcount == 1, f"job {job_id} holds no lease"  # type: ignore[attr-defined]


def polled_at(database_url: str, device: str) -> datetime | None:
    """When an agent's claim for ``device`` last found no job, as the server recorded it."""
    from sqlalchemy import select

    from profiler_server.models import Device

    with _session(database_url) as session:
        return session.execute(select(Device.polled_at).where(Device.name == device)).scalar_one()


def rewind_poll(database_url: str, device: str, seconds: float) -> datetime:
    """Move ``device``'s recorded poll ``seconds`` into the past (what waiting that long does, without the wait);
    returns the new time."""
    from sqlalchemy import update

    from profiler_server.models import Device

    at = polled_at(database_url, device)
    assert at is not None, f"no poll recorded for {device}"
    with _session(database_url) as session:
        session.execute(
            update(Device)
            .where(Device.name == device)
            .values(polled_at=at - timedelta(seconds=seconds), updated_at=Device.updated_at)
        )
    return at - timedelta(seconds=seconds)
