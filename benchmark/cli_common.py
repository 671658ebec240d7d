"""What every CLI module shares: the consoles and the one-line error exit (2 = bad input)."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def fail(msg: str, code: int = 2) -> None:
    """Print one error line and exit (2 = bad input)."""
    err.print(f"error: {msg}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)
