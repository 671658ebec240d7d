"""What a planned run's state is: one enum for outcomes, `status` and the worker protocol (never parsed from text)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunState(StrEnum):
    """The state of one planned run, before, during or after a command."""

    PLANNED = "planned"  # trains in this invocation (dry run)
    DONE = "done"  # a finished record
    FAILED = "failed"  # a failed record
    SKIPPED = "skipped"  # its own record exists and is kept (detail: which)
    REUSES = "reuses"  # dry run: will get a linked copy of a finished record elsewhere (detail: suite/run id)
    SHARES = "shares"  # dry run: trains once with an identical run of another cell (detail: suite/run id)
    REUSED = "reused"  # got a linked copy (detail: suite/run id)
    PENDING = "pending"  # waits for the run it shares with (detail: that run, why)
    RUNNING = "running"  # another process holds its lock
    QUEUED = "queued"  # submitted to Slurm (detail: job id)
    INTERRUPTED = "interrupted"  # a checkpoint without a record: the same command resumes it
    NOT_STARTED = "not started"
    UNREADABLE = "unreadable"  # a record that cannot be read
    RANK = "rank"  # another process of a multi-process run, which rank 0 records (detail: "r of w")


@dataclass(frozen=True)
class Status:
    """A state with its detail, shown as 'state (detail)'."""

    state: RunState
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.state.value} ({self.detail})" if self.detail else self.state.value
