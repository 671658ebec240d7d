"""The one "did you mean" helper: close matches of a misspelt name among the valid ones (stdlib only)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """" Did you mean 'a' or 'b'?" for up to three close matches (case-insensitive), else "".

    The text starts with a space so that callers append it to a sentence: f"unknown x 'y'.{did_you_mean(...)}".
    """
    by_lower: dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(str(c).lower(), str(c))
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=3, cutoff=cutoff)
    return f" Did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""
