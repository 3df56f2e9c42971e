"""Data in: download, preprocess, and the DataModule that serves the splits."""

SPLITS = ("train", "val", "test")
