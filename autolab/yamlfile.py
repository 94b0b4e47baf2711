"""Reading the YAML files people write (campaigns, devices, benchmark specs), with clear errors.

One place, so every file kind reports an unreadable file or a syntax error the same way: naming
the file and, for syntax errors, the line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from autolab.exceptions import ConfigError


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file.

    Args:
        path: The file.
        what: What kind of file it is, for messages (``"campaign file"``).

    Raises:
        ConfigError: The file cannot be read, or is not valid YAML (with line and column).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err
