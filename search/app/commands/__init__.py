"""CLI command groups of `hwnas`; each module here has ``register(app)`` and is picked up by search.app.cli."""
