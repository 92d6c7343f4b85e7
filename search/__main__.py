"""``python -m search ...`` runs the ``hwnas`` command line (torchrun launches it this way)."""

from search.app.cli import main

if __name__ == "__main__":
    main()
