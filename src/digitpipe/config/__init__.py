"""The config's values checked (values.py) and its `auto`s resolved (settings.py: validate)."""
