"""ADB: the wire protocol (shared by the loopback daemon) and host keys."""
