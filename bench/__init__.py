"""tower-proxy's benchmark: `bench/run` (see `bench/__main__.py`, docs/benchmarks.md)."""
