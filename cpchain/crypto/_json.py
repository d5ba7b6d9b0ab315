"""Depth-limited JSON parsing for untrusted input (messages, keystores, backups).

Owns only parsing. ``json.loads`` recurses in C; if any library has raised the
interpreter's recursion limit, deeply nested input can overflow the C stack
and crash the process instead of raising, so nesting is bounded before parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "loads_limited"]

MAX_JSON_DEPTH = 64
# One linear left-to-right pass: a string token (closing quote optional, so an
# unterminated string never triggers rescans) or a bracket.
_TOKEN_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _too_deep(text: str, max_depth: int) -> bool:
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper than the number of openers
    depth = 0
    for match in _TOKEN_RE.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads_limited(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON, raising ``ValueError`` if invalid or nested deeper than ``max_depth``."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if _too_deep(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
