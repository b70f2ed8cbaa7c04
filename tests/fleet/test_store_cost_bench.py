"""`python -m bench.store_cost` in a one-round mode, so that it cannot silently rot.

It asserts that both proxies were measured and a ratio came out — never how
fast anything was: timing belongs to the benchmark's own report.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ..conftest import LOG_DIR, PYTHON, ROOT


@pytest.mark.slow
def test_store_cost_bench_measures_both_stores() -> None:
    """One round of file vs redis: both rates measured, the ratio reported, exit 0."""
    missing = [tool for tool in ("wrk", "nginx", "redis-server") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"benchmark tools not installed: {', '.join(missing)} (scripts/setup)")
    argv = [PYTHON, "-m", "bench.store_cost", "--rounds", "1", "--seconds", "1"]
    result = subprocess.run(
        [*argv, "--json", "--logs", str(LOG_DIR)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert len(report["rounds"]["file"]) == len(report["rounds"]["redis"]) == 1
    assert min(report["medians"].values()) > 0
    assert report["ratio"] == report["medians"]["redis"] / report["medians"]["file"]
