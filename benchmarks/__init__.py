"""Klantbeeld benchmarks: `python -m benchmarks` (or `make bench`) prints one table per run."""
