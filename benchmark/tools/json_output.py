"""--json output: the JSON alone on stdout, whatever else a command prints on stderr (standard library only)."""

from __future__ import annotations

import contextlib
import json
import sys
from types import TracebackType
from typing import Any, TextIO


class JsonOutput:
    """With --json, whatever a command prints while it works (tables, progress, warnings) goes to stderr, and
    `emit` writes the JSON alone to the real stdout; without it, nothing changes."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stdout: TextIO = sys.stdout
        self._redirect: contextlib.AbstractContextManager[Any] | None = None

    def __enter__(self) -> JsonOutput:
        self.stdout = sys.stdout
        if self.enabled:
            self._redirect = contextlib.redirect_stdout(sys.stderr)
            self._redirect.__enter__()
        return self

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(tp, exc, tb)
            self._redirect = None

    def emit(self, data: Any) -> None:
        """Print `data` as JSON (a str is taken as JSON already) on the command's stdout."""
        text = data if isinstance(data, str) else json.dumps(data, indent=1, default=str)
        print(text, file=self.stdout, flush=True)
