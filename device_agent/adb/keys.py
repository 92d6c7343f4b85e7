"""The host's ADB key pair: where it lives, and the signer ``adb-shell`` authenticates with.

The daemon's side of the handshake (checking a signature, remembering keys) is the loopback
phone's: ``device_agent/loopback/auth.py``.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_key_path() -> Path:
    """Where the agent's ADB key lives: ``~/.android/adbkey`` when present, else our config dir."""
    android = Path.home() / ".android" / "adbkey"
    if android.exists():
        return android
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hwnas" / "adbkey"


def load_or_create_signer(path: Path | None = None):  # -> adb_shell PythonRSASigner
    """Load the RSA key at ``path`` (default: ``default_key_path()``), generating it once if missing."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = path or default_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(path))
    return PythonRSASigner.FromRSAKeyPath(str(path))
