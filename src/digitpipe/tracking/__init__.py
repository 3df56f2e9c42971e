"""MLflow, in one place: the store (store.py), a run's life (run.py, owner.py), what it records
(metadata.py, logger.py, callbacks.py, model.py) and sweep parent runs (sweep.py)."""
