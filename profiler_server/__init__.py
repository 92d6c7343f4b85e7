"""The profiler server: FastAPI + SQLAlchemy service that keeps devices, measurements, jobs and
latency tables (SQLite or PostgreSQL, schema owned by alembic). Never imports torch.

Importing the package is cheap on purpose; the app lives in ``profiler_server.app``.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
