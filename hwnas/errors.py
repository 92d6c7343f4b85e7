"""The one base of the errors the ``hwnas`` command reports as a single line (no traceback).

Every error type of ``hwnas`` and ``search`` that a user can cause (bad input, missing data, an unreachable or
refusing server, a failed job) derives from ``HwnasError``; the command line catches this base once
(``search.app.commands._errors.user_errors``), so a new error type needs no list to be kept. Each keeps its
built-in base too (``ValueError``, ``LookupError``, ``RuntimeError``), so code that catches those still does.
The agent's and the server's own bases are ``device_agent.errors.AgentError`` and
``profiler_server.errors.ServiceError``.
"""

from __future__ import annotations


class HwnasError(Exception):
    """An error the ``hwnas`` command prints as ``error: <message>`` and exits 1 on."""
