"""Data in: download, preprocess, and the DataModule that serves the splits."""

from digitpipe.metric_names import SPLITS

__all__ = ["SPLITS"]
