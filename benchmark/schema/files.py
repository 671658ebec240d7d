"""Atomic file writes that leave files readable as the umask allows (0644 under umask 022), never 0600."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """This process's umask, read without changing it where Linux exposes it (/proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None], *, suffix: str = ".tmp", fsync: bool = False) -> None:
    """Call `write(tmp)` on a temp file next to `path`, then rename it over `path`: readers see the old file or the
    whole new one. The file gets mode 0666 & ~umask like any file `open()` creates (mkstemp alone gives 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = False) -> None:
    """Write a text file atomically (see `atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), fsync=fsync)
