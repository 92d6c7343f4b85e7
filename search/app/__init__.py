"""The ``hwnas`` application on top of the DNAS library: the command line (``cli``, ``commands``), ``hwnas demo``,
plots, rich progress bars and the torchrun launcher.

The library (``search`` outside this package) never imports it (tests/test_layering.py): the app hands the library
its progress bars and plots through ``search.hooks``.
"""
