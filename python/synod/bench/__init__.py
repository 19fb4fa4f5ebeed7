"""Benchmarks: `python -m synod.bench --help`. Results go to docs/BENCHMARKS.md."""
