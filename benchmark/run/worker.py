"""Entry point of one unit of work in its own process (local executor): `python -m benchmark.run.worker JOBS.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmark.config.suite import SuiteError
from benchmark.engine.checkpoint import CheckpointError
from benchmark.engine.runtime import Preempted
from benchmark.run.faults import os_error_line
from benchmark.run.jobs import RunJob
from benchmark.run.recording import outcome_json
from benchmark.run.unit import run_unit

EXIT_STOPPED, EXIT_BAD_INPUT = 3, 2


def main(job_file: str) -> int:
    """Run the file's job (a JSON object) or pack (a JSON list of jobs); print one outcome line per run.

    A stop request (SIGTERM / SIGINT: the runs checkpoint) prints {"stopped": ...} and exits 3; an unusable input
    found here (a damaged checkpoint, an untrusted record, an OS error before training) prints {"fatal": ...} and
    exits 2. The parent turns both into its own exit.
    """
    data = json.loads(Path(job_file).read_text())
    jobs = [RunJob.from_json(json.dumps(d)) for d in (data if isinstance(data, list) else [data])]
    try:
        outs = run_unit(jobs)
    except Preempted as e:
        print(json.dumps({"stopped": str(e), "signum": e.signum}), flush=True)
        return EXIT_STOPPED
    except (SuiteError, CheckpointError) as e:
        print(json.dumps({"fatal": str(e)}), flush=True)
        return EXIT_BAD_INPUT
    except OSError as e:
        print(json.dumps({"fatal": os_error_line(e)}), flush=True)
        return EXIT_BAD_INPUT
    for out in outs:
        print(json.dumps(outcome_json(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
