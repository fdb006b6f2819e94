"""Benchmarks: prepare → run → report, each a command of `python -m benchmarks.<name>`."""
