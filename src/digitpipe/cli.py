"""Entry-point helpers shared by the thin scripts in src/."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from digitpipe.errors import ConfigError, exit_on_user_error


def check_group_choices(args: list[str], config_dir: Path) -> None:
    """Reject an unknown config-group choice (optimizer=adagrad) in one line naming the valid ones.

    Hydra would also refuse it, but over a dozen lines of search-path details.
    """
    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # a syntax error: Hydra reports those itself
            continue
        group = config_dir / override.key_or_group
        if not group.is_dir():
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml"))
        sweep = override.is_sweep_override()
        values = list(override.sweep_string_iterator()) if sweep else [override.value()]
        for value in values:
            if value is not None and str(value) not in (*choices, "null"):
                key, valid = override.key_or_group, ", ".join(choices)
                raise ConfigError(f"{key}={value} is not a known choice; choose one of: {valid}")


def preflight(config_dir: Path) -> None:
    """Checks on the command line that must fail before Hydra starts (exit 2, one line)."""
    exit_on_user_error(check_group_choices)(sys.argv[1:], config_dir)
