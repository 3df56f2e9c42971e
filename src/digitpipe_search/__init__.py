"""Hyperparameter search with Optuna: a space from conf/search/, trials that are train(cfg) calls,
pruned per epoch on val/acc, on one study that many workers and machines share (docs/search.md)."""
