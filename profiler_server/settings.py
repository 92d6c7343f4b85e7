"""Server settings from the environment (``DATABASE_URL``, ``HOST``, ``PORT`` ...), one class."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./hwnas.db"


class Settings(BaseSettings):
    """Everything the server reads from its environment; CLI options override these."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Reads (LUTs, devices, jobs) are open by default; writes always need a token.
    read_requires_token: bool = False
    # Bodies above this many bytes are answered with 413 before they are parsed.
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # At most this many request bodies over 1 MiB are read and handled at once per worker; one more gets 503 + Retry-After.
    max_large_bodies: int = Field(default=8, ge=0)
    # A connection must send its request headers within this many seconds (from connecting, or from the first byte of
    # its next request); 0 turns it off.
    header_timeout_s: float = Field(default=10.0, ge=0)
    # A request body that stops arriving for this long ends its connection; 0 turns it off.
    body_idle_timeout_s: float = Field(default=60.0, ge=0)
    # uvicorn's wait for the next request on a kept-alive connection.
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    # PostgreSQL: the longest any one statement may run (ms); 0 turns the limit off.
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    # A job claimed this many times without finishing (its items keep crashing agents) is failed with a reason.
    max_claims: int = Field(default=5, ge=1)
    # Run alembic upgrade when the app starts (the CLI's serve does it once before workers fork).
    upgrade_on_start: bool = False
