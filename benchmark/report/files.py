"""Report files: atomic writes (temp file + rename, mode from the umask) and figures saved as PNG and PDF."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIGURE_DPI = 150
FIGURE_FORMATS = ("png", "pdf")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write(path: Path, write: Callable[[str], Any]) -> Path:
    """Call write(temp path) in the target's folder, then rename over the target: no partial file is ever seen.

    The file gets the mode an ordinary open() would give (0666 minus the umask), not mkstemp's 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Any, stem: Path, formats: tuple[str, ...] = FIGURE_FORMATS) -> list[Path]:
    """Write a matplotlib figure as stem.png (150 dpi) and stem.pdf, each atomically; returns the paths."""
    out = []
    for fmt in formats:
        out.append(atomic_write(stem.with_name(f"{stem.name}.{fmt}"),
                                lambda p, fmt=fmt: fig.savefig(p, dpi=FIGURE_DPI, format=fmt, bbox_inches="tight")))
    return out
