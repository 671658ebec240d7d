"""Report files: atomic writes (temp file + rename, mode from the umask) and figures saved as PNG and PDF."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.schema.files import atomic_write as shared_atomic_write

FIGURE_DPI = 150
FIGURE_FORMATS = ("png", "pdf")


def atomic_write(path: Path, write: Callable[[str], Any]) -> Path:
    """`schema.files.atomic_write` (temp file + rename, mode from the umask) returning the path written."""
    shared_atomic_write(path, write, suffix=path.suffix)
    return path


def save_figure(fig: Any, stem: Path, formats: tuple[str, ...] = FIGURE_FORMATS) -> list[Path]:
    """Write a matplotlib figure as stem.png (150 dpi) and stem.pdf, each atomically; returns the paths."""
    out = []
    for fmt in formats:
        out.append(atomic_write(stem.with_name(f"{stem.name}.{fmt}"),
                                lambda p, fmt=fmt: fig.savefig(p, dpi=FIGURE_DPI, format=fmt, bbox_inches="tight")))
    return out
