"""`python -m benchmark ...`: the lt-bench command line without the installed entry point."""

from benchmark.cli import app

app()
