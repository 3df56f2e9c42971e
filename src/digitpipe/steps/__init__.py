"""Opt-in optimizer steps (train_step in conf/config.yaml): several per Lightning batch, each run
eagerly or replayed as a CUDA graph. Which, and why not, is decided in config/steps.py; a training
that runs Lightning's own steps never imports this package."""
