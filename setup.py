"""Build hook: the wheel ships the top-level suites/ (and the committed bench profiles) as package data.

suites/ stays the one source of truth; `build_py` copies it into benchmark/suites/ inside the build only, so wheels
and sdists carry it while a checkout or an editable install reads the top-level folder (benchmark.config.suite).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"suites": (ROOT / "suites", "*.yaml"), "perf": (ROOT / "reports" / "perf", "bench-*.json")}


class BuildWithSuites(build_py):
    """build_py, then copy each shipped folder into <build_lib>/benchmark/<name>/."""

    def run(self) -> None:
        super().run()
        for name, (src, pattern) in SHIPPED.items():
            files = sorted(src.glob(pattern))
            if name == "suites" and not files:
                raise RuntimeError(f"no suites in {src}: the wheel would ship none")
            dest = Path(self.build_lib) / "benchmark" / name
            dest.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, dest / f.name)


setup(cmdclass={"build_py": BuildWithSuites})
