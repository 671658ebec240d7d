"""Entry point of one run in its own process (local executor): `python -m benchmark.worker JOB.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmark.runner import RunJob, run_job


def main(job_file: str) -> int:
    out = run_job(RunJob.from_json(Path(job_file).read_text()))
    print(json.dumps({"status": out.status, "acc": out.acc, "error": out.error}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
