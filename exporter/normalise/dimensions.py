"""Custom dimensions on a record: the `llmtally.dim.<key>` attributes (from `llmtally.attributes(<key>=...)`),
bounded here; the receiver then keeps only the keys `dimensions:` declares (`exporter/dimensions.py`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PREFIX = "llmtally.dim."
KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_DIMENSIONS = 32  # keys read from one record (the app sends at most as many)
MAX_VALUE = 256  # characters of a value (longer ones are cut)


def dimensions(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The record's dimensions by key: valid keys only, text (or number) values, at most `MAX_DIMENSIONS`."""
    out: dict[str, str] = {}
    for name, value in attrs.items():
        if not name.startswith(PREFIX):
            continue
        key = name[len(PREFIX) :]
        if not KEY_PATTERN.fullmatch(key):
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            text = str(value)
        else:
            continue
        if text:
            out[key] = text[:MAX_VALUE]
            if len(out) == MAX_DIMENSIONS:
                break
    return out
