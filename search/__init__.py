"""search: the DNAS client (FBNet super net, cost models, sampling, training, export)."""
