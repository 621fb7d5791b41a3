"""The one rule for the names the harness turns into folders, store keys and result fields:
entry names (``evaluate --name``, result ``entry``) and specimen names of a split from scans."""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "check_name"]

#: ASCII letters and digits, '.', '_' and '-', starting with a letter or digit (the result
#: schema's ``entry`` pattern is the same)
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def check_name(name: str, what: str) -> str:
    """``name`` if it follows :data:`NAME_PATTERN`, else ValueError naming ``what`` and the fix."""
    if not re.fullmatch(NAME_PATTERN, name or ""):
        raise ValueError(f"{what} {name!r}: use ASCII letters, digits, '.', '_' and '-' only, "
                         "starting with a letter or digit")
    return name
