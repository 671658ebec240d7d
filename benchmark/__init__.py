"""lt-bench: benchmark suites for long-tailed image classification."""

__version__ = "0.1.0"
