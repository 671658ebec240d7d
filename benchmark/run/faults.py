"""Faults outside the program's control (OS errors, memory, interrupts) phrased as one line that says what to do."""

from __future__ import annotations

import errno
import signal

from benchmark.engine.checkpoint import CheckpointError
from benchmark.engine.runtime import Preempted

EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_INTERRUPTED = 2, 3, 130
FAULTS = (OSError, MemoryError, KeyboardInterrupt, Preempted, CheckpointError)  # what fault_line phrases

_HINTS = {
    errno.ENOSPC: "no space left on the device: free some space or choose another --results-dir",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another --results-dir",
    errno.EROFS: "read-only file system: choose a writable --results-dir",
    errno.EACCES: "permission denied: fix the permissions or choose another --results-dir",
    errno.EPERM: "operation not permitted: fix the permissions or choose another --results-dir",
    errno.ENOTDIR: "a path component is a file, not a folder: move it or choose another path",
    errno.EISDIR: "is a folder where a file belongs: move it or choose another path",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists and is in the way: move it",
}


def os_error_line(e: OSError) -> str:
    """'<path>: <cause and what to do>' for an OSError (the cause from errno, else the OS's own words)."""
    where = e.filename if e.filename is not None else "(no path)"
    if e.filename2 is not None:
        where = f"{where} -> {e.filename2}"
    cause = _HINTS.get(e.errno or -1) or (e.strerror or str(e) or type(e).__name__)
    return f"{where}: {cause}"


def fault_line(e: BaseException) -> tuple[str, int]:
    """(one line, exit code) for a fault that ends a command: 3 for a stop (SIGTERM; 130 for Ctrl-C), which the same
    command resumes, 2 for anything the user fixes (a path, the disk, a damaged checkpoint, the sizes)."""
    resume = "run the same command again to resume"
    if isinstance(e, Preempted):
        if e.signum == signal.SIGINT:
            return f"interrupted (Ctrl-C): {e}; {resume}", EXIT_INTERRUPTED
        return f"stopped: {e}; {resume}", EXIT_STOPPED
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted (Ctrl-C); {resume}", EXIT_INTERRUPTED
    if isinstance(e, OSError):
        return os_error_line(e), EXIT_BAD_INPUT
    if isinstance(e, MemoryError):
        return "out of memory: lower data.image_size, the data sizes or train.batch_size", EXIT_BAD_INPUT
    return str(e), EXIT_BAD_INPUT
