"""ADB on the host's side: the agent's key pair (the client itself is the ``adb-shell`` package)."""
