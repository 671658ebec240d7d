"""Entry point of one unit of work in its own process (local executor): `python -m benchmark.run.worker JOBS.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmark.run.jobs import RunJob
from benchmark.run.recording import outcome_json
from benchmark.run.unit import run_unit


def main(job_file: str) -> int:
    """Run the file's job (a JSON object) or pack (a JSON list of jobs); print one outcome line per run."""
    data = json.loads(Path(job_file).read_text())
    jobs = [RunJob.from_json(json.dumps(d)) for d in (data if isinstance(data, list) else [data])]
    for out in run_unit(jobs):
        print(json.dumps(outcome_json(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
