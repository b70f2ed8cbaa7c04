"""Load generators and their parsers: wrk for throughput and latency, curl for
one-shot calls and downloads, aiohttp for the concurrent refresh storm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from .stack import rss_kib

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx answers plus socket errors


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk(url: str, *, connections: int, threads: int, seconds: float) -> WrkResult:
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--latency", "--timeout", "10s", url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(out.stdout)


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    bad = int(non_2xx.group(1)) if non_2xx else 0
    bad += sum(int(n) for n in errors.groups()) if errors else 0
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_percentile(text, "50"),
        p99_ms=_percentile(text, "99"),
        requests=int(total.group(1)),
        bad=bad,
    )


def _percentile(text: str, which: str) -> float:
    match = re.search(rf"^\s+{which}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {which}% latency in wrk's output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def curl_time(url: str, *, cacert: str | None = None) -> float:
    """One curl process, one request; curl's own time_total in ms (2xx required)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url]
    if cacert:
        argv[1:1] = ["--cacert", cacert]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    code, seconds = out.split()
    if not code.startswith("2"):
        raise RuntimeError(f"{url} answered {code}")
    return float(seconds) * 1000


@dataclass(frozen=True, slots=True)
class Download:
    mb_per_s: float
    rss_growth_kib: int


def download(url: str, *, pid: int | None) -> Download:
    """Stream one large response through curl into /dev/null, sampling the RSS of `pid`."""
    baseline = rss_kib(pid) if pid else 0
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_kib(pid)) if pid else 0

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{speed_download}", url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    finally:
        done.set()
        sampler.join()
    code, speed = out.split()
    if code != "200":
        raise RuntimeError(f"{url} answered {code}")
    return Download(mb_per_s=float(speed) / 1e6, rss_growth_kib=peak[0] - baseline)


def timed(fn: object) -> float:
    """Wall time of one call, in seconds (for start-up measurements)."""
    started = time.monotonic()
    fn()  # type: ignore[operator]
    return time.monotonic() - started
