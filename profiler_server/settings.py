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
    # PostgreSQL: the longest any one statement may run (ms); 0 turns the limit off.
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    # A job claimed this many times without finishing (its items keep crashing agents) is failed with a reason.
    max_claims: int = Field(default=5, ge=1)
    # Run alembic upgrade when the app starts (the CLI's serve does it once before workers fork).
    upgrade_on_start: bool = False
