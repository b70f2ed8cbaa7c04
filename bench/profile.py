"""Profile tower-proxy under load: where does a proxied request's time go?

Starts the fast nginx upstream and one `tower-proxy serve`, drives it with
wrk (32 connections) while py-spy samples it, and prints the functions with
the most samples — by own time and by inclusive time.

    .venv/bin/python -m bench.profile --seconds 15   # after bench/run installed py-spy

`bench/run` (the full run) records the same profile and puts it in the report.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import load
from .stack import (
    ROOT,
    Stack,
    free_port,
    make_certificate,
    start_nginx,
    start_tower_proxy,
    upstream_servers,
    write_proxy_config,
    write_token_file,
)

PY_SPY = ROOT / "bench" / ".venv-mitm" / "bin" / "py-spy"  # installed by bench/run


# The call chain every sample shares (start-up down to the event loop).
_SPINE = ("<module>", "_run_module_as_main", "_run_code", "main", "_serve_processes",
          "_serve_on_loop", "Runner.run")  # fmt: skip


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({file})"


def _component(frame: str) -> str:
    """Which library (or which module of ours) a frame belongs to."""
    path = frame.partition(" (")[2].rsplit(":", 1)[0]
    parts = path.split("/")
    if parts[0] in ("proxy", "aiohttp") and len(parts) > 1:
        return f"{parts[0]}/{parts[-1]}"
    return parts[0] if len(parts) > 1 else f"stdlib {path}"


def summarize(collapsed: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    by_component: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        raw_frames = stack.split(";")
        frames = [_frame_name(f) for f in raw_frames]
        total += count
        own[frames[-1]] += count
        by_component[_component(raw_frames[-1])] += count
        for name in set(frames):
            if name.split(" (")[0] not in _SPINE:
                inclusive[name] += count
    lines = [f"{total} samples", "", "own time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "own time by module:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_component.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def record(pid: int, url: str, *, seconds: int, top: int, raw: Path) -> str:
    """Sample `pid` with py-spy while wrk (32 connections) loads `url`; the summary."""
    load.wrk(url, connections=32, threads=2, seconds=2)  # warm up
    result: list[load.WrkResult] = []
    driver = threading.Thread(
        target=lambda: result.append(load.wrk(url, connections=32, threads=2, seconds=seconds + 2))
    )
    driver.start()
    subprocess.run(
        [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds),
         "--rate", "200", "--format", "raw", "--output", str(raw), "--nonblocking"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    driver.join()
    rate = f"{result[0].requests_per_s:.0f} req/s under the profiler\n"
    return rate + summarize(raw.read_text(), top)


def available() -> bool:
    return PY_SPY.exists()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile.txt")
    args = parser.parse_args()
    if not available():
        print(f"bench.profile: {PY_SPY} is missing (bench/run installs it)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tower-proxy-profile-"))
    work.chmod(0o755)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stack = Stack(work=work, logs=args.out.parent)
    try:
        (work / "files").mkdir()
        cert, key = make_certificate(work)
        up, tls, port = free_port(), free_port(), free_port()
        start_nginx(
            stack, "nginx-upstream", upstream_servers(up, tls, work / "files", cert, key), up
        )
        write_token_file(work / "token.json")
        config = write_proxy_config(
            work / "proxy.toml",
            api_url=f"http://127.0.0.1:{up}/api/v1",
            oauth_url=f"http://127.0.0.1:{up}/oauth",
            port=port,
            token_path=work / "token.json",
        )
        proxy, _ = start_tower_proxy(stack, "tower-proxy-profiled", config, port)
        url = f"http://127.0.0.1:{port}/api/v1/projects"
        raw = args.out.with_suffix(".raw")
        summary = record(proxy.pid, url, seconds=args.seconds, top=args.top, raw=raw)
    finally:
        stack.close()
    args.out.write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
