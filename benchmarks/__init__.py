"""Performance benchmarks: `python -m benchmarks` (all) or `python -m benchmarks --only NAME,...`.

Benchmarks are not tests: they print a table and write benchmarks/results/latest.{json,md}.
"""
