"""search: the DNAS library (FBNet super net, cost models, sampling, training, export); ``search.app`` is the
``hwnas`` application built on it, which the library never imports (``search.hooks``)."""
