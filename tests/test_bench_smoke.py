"""The benchmark (`bench/run`) in its tiny mode, so that it cannot silently rot.

It asserts that every scenario ran end to end and produced its numbers —
never how fast anything was: timing belongs to the benchmark's own report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import hot_path

from .conftest import LOG_DIR, PYTHON, ROOT, configure_session_logging


def _tools_missing() -> list[str]:
    return [tool for tool in ("wrk", "nginx", "curl", "openssl") if shutil.which(tool) is None]


@pytest.mark.slow
def test_bench_tiny_run_measures_every_scenario(tmp_path: Path) -> None:
    """`python -m bench --tiny` runs all six scenarios and writes the report."""
    missing = _tools_missing()
    if missing:
        pytest.skip(
            f"benchmark tools not installed: {', '.join(missing)} (scripts/setup.d/30-bench.sh)"
        )
    # The test venv stands in for the plain-Python wheel's (bench/run makes that one).
    venv = str(Path(PYTHON).parent.parent)
    result = subprocess.run(
        [PYTHON, "-m", "bench", "--tiny", "--no-mitm", "--out", str(tmp_path),
         "--logs", str(LOG_DIR), "--work", str(tmp_path / "work"), "--pure-product", venv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| tower-proxy |" in report and "nginx-proxy" in report
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    for scenario in ("throughput", "latency", "streaming", "distant", "storm", "footprint"):
        assert scenario in results, scenario
    for proxy in (
        "nginx-proxy",
        "tower-proxy",
        "tower-proxy-pure",
        "plain-aiohttp",
        "python-floor",
    ):
        assert results["throughput"][proxy]["bad"] == 0, proxy  # every answer a 2xx
        assert results["throughput"][proxy]["cpu_us_per_request"] > 0, proxy  # CPU counted
        assert results["latency"][proxy]["bad"] == 0, proxy
    assert results["storm"]["failed"] == 0
    assert results["storm"]["refreshes"] == [1]  # one round in the tiny mode


@pytest.mark.slow
def test_instruction_count_per_request() -> None:
    """`python -m bench.instructions` counts a request's instructions under valgrind."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (scripts/setup.d/30-bench.sh)")
    result = subprocess.run(
        [PYTHON, "-m", "bench.instructions", "--few", "50", "--many", "250"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counted = int(result.stdout.split()[0])
    assert 10_000 < counted < 10_000_000  # a request's worth: neither nothing nor a start-up


@pytest.mark.parametrize("layer", hot_path.LAYERS)
def test_hot_path_layers_each_answer_every_request(layer: str, tmp_path: Path) -> None:
    """Each `--layer` answers all its requests; only the whole app writes request lines."""
    try:
        [per_request] = hot_path.measure(
            requests=100, rounds=1, log_level="info", work=tmp_path, layer=layer
        )
    finally:
        configure_session_logging()  # measure() sent the log to its own file
    assert per_request > 0
    lines = (tmp_path / "hot-path.log").read_text().splitlines()
    requests = [line for line in lines if json.loads(line)["event"] == "request"]
    assert len(requests) == (100 if layer == "app" else 0)
