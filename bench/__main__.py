"""`python -m bench` (or `bench/run`): tower-proxy measured side by side.

    bench/run                 the full run (~20 min): prints the ratios, writes
                              docs/benchmarks.md and docs/benchmarks.png
    bench/run --tiny          seconds; every scenario once, small sizes (the smoke test)

Everything runs on loopback, started and stopped here.  Absolute numbers on
a shared 2-core machine mean little: the report leads with ratios against
nginx-as-proxy (or the direct upstream) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from . import hot_path, profile, report, scenarios
from .load import wrk_path
from .scenarios import Settings
from .stack import (
    DEV_VENV,
    ROOT,
    Stack,
    free_port,
    make_certificate,
    mitm_available,
    proxy_servers,
    start_floor_proxy,
    start_mitmproxy,
    start_nginx,
    start_plain_proxy,
    start_tower_proxy,
    upstream_servers,
    write_proxy_config,
    write_token_file,
)

FULL = Settings(
    rounds=5,
    seconds=10,
    download_bytes=1024**3,
    distant_calls=50,
    idle_seconds=61,
    storm_requests=1000,
)
TINY = Settings(
    rounds=1, seconds=1, download_bytes=32 * 1024**2, distant_calls=3, idle_seconds=0,
    storm_requests=50,
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument("--no-mitm", action="store_true", help="leave mitmproxy out")
    parser.add_argument("--workers", type=int, default=2, help="the tower-proxy workers leg")
    parser.add_argument("--only", help="comma-separated scenarios: 1,2,3,4,5,6,7")
    parser.add_argument("--out", type=Path, help="where the report goes (default docs/)")
    parser.add_argument(
        "--logs", type=Path, help="child process logs (default: bench/results/logs)"
    )
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. other load)")
    parser.add_argument(
        "--pure-product",
        type=Path,
        help="a venv with the plain-Python wheel, measured as tower-proxy-pure "
        "(bench/run makes bench/.venv-pure)",
    )
    parser.add_argument(
        "--product",
        type=Path,
        default=DEV_VENV,
        help="the venv whose tower-proxy is measured (default .venv; bench/run installs "
        "the package in bench/.venv-product first and passes that)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    base = TINY if args.tiny else FULL
    values = {f: getattr(base, f) for f in base.__dataclass_fields__}
    if args.rounds:
        values["rounds"] = args.rounds
    if args.seconds:
        values["seconds"] = args.seconds
    return Settings(**values)


def _workers_supported() -> bool:
    from proxy.config import ServerConfig

    return "workers" in ServerConfig.__dataclass_fields__


def _machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    for tool, argv in {"nginx": ["nginx", "-v"], "wrk": ["wrk", "-v"]}.items():
        out = subprocess.run(argv, capture_output=True, text=True)
        first_line = (out.stderr or out.stdout).strip().splitlines()[0]
        versions[tool] = " ".join(first_line.split()[:3])  # "wrk debian/4.1.0-3+b2 [epoll]"
    return {
        "cpu": cpu,
        "cores": str(len([x for x in Path("/proc/cpuinfo").read_text().split("\n\n") if x])),
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({_python_build()})",
        **versions,
    }


def _python_build() -> str:
    """How the interpreter was compiled.  It matters: `bench.hot_path` took 1.23x
    as long under pyenv's default build of 3.11.7 (no PGO, no LTO, a shared
    libpython) as under Debian's 3.11.2 (PGO + LTO) on the same machine."""
    flags = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    done = [name for flag, name in (("--enable-optimizations", "PGO"), ("--with-lto", "LTO"))
            if flag in flags]  # fmt: skip
    return " + ".join(done) + " build" if done else "built without PGO or LTO"


def _product(venv: Path) -> str:
    if venv.resolve() == DEV_VENV.resolve():
        return "the development venv (.venv, editable install with the test tools)"
    where = venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv
    kind = "the compiled wheel" if _compiled(venv) else "a wheel"
    return f"installed as a user gets it ({where}: {kind}, runtime dependencies only)"


def _compiled(venv: Path) -> bool:
    """Whether `venv`'s proxy package holds mypyc's compiled modules (scripts/wheel)."""
    return any(venv.glob("lib/python*/site-packages/proxy/upstream.*.so"))


def run(args: argparse.Namespace) -> dict[str, object]:
    settings = _settings(args)
    only = set((args.only or "1,2,3,4,5,6,7").split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="tower-proxy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    logs = args.logs or ROOT / "bench" / "results" / "logs"
    if not args.logs:
        shutil.rmtree(logs, ignore_errors=True)  # this run's logs only
    # The smoke test points --logs at the suite's log directory, where every
    # line is scanned for leaked secrets; hence flat `bench-*.log` files.
    logs.mkdir(parents=True, exist_ok=True)
    pure = args.pure_product.resolve() if args.pure_product else None
    stack = Stack(work=work, logs=logs, product=args.product.resolve(), pure=pure)
    results: dict[str, object] = {"settings": _as_dict(settings), "note": args.note}
    load_before = os.getloadavg()[0]
    try:
        results.update(_measure(stack, settings, only, args))
    finally:
        stack.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {
        **_machine(),
        "load": f"{load_before:.2f} → {os.getloadavg()[0]:.2f}",
        "product": _product(args.product),
    }
    return results


def _as_dict(settings: Settings) -> dict[str, object]:
    return {f: getattr(settings, f) for f in settings.__dataclass_fields__}


def _measure(
    stack: Stack, settings: Settings, only: set[str], args: argparse.Namespace
) -> dict[str, object]:
    files = stack.work / "files"
    files.mkdir(exist_ok=True)
    with (files / "big.bin").open("wb") as fh:
        fh.truncate(settings.download_bytes)  # sparse: no disk, served from page cache
    cert, key = make_certificate(stack.work)
    up_port, tls_port, ngx_port = free_port(), free_port(), free_port()
    start_nginx(
        stack, "nginx-upstream", upstream_servers(up_port, tls_port, files, cert, key), up_port
    )
    nginx_proxy = start_nginx(stack, "nginx-proxy", proxy_servers(ngx_port, up_port), ngx_port)
    upstream = f"http://127.0.0.1:{up_port}"
    targets = {"direct": upstream, "nginx-proxy": f"http://127.0.0.1:{ngx_port}"}
    pids: dict[str, int] = {}  # one process each: RSS is read from it
    proxies = {"nginx-proxy": nginx_proxy.pid}  # the process trees whose CPU is counted
    token_path = stack.work / "main" / "token.json"
    write_token_file(token_path)
    legs: list[tuple[str, int, str, Path | None]] = [
        ("tower-proxy", 0, "info", None),
        # The same without the per-request log line: what that line costs.
        ("tower-proxy-nolog", 0, "warning", None),
        (f"tower-proxy-{args.workers}w", args.workers, "info", None),
    ]
    if stack.pure is not None:  # what a machine without a compiler runs
        legs.append(("tower-proxy-pure", 0, "info", stack.pure))
    for name, workers, level, venv in legs:
        if workers and not _workers_supported():
            continue
        port = free_port()
        config = write_proxy_config(
            stack.work / f"{name}.toml",
            api_url=f"{upstream}/api/v1",
            oauth_url=f"{upstream}/oauth",
            port=port,
            token_path=token_path,
            workers=workers,
            log_level=level,
        )
        proc, _ = start_tower_proxy(stack, name, config, port, venv=venv)
        targets[name] = f"http://127.0.0.1:{port}"
        proxies[name] = proc.pid
        if not workers:
            pids[name] = proc.pid
    plain = start_plain_proxy(stack, free_port(), upstream)
    targets["plain-aiohttp"] = f"http://127.0.0.1:{plain.port}"
    pids["plain-aiohttp"] = proxies["plain-aiohttp"] = plain.pid
    # A yardstick, not a rival: what the least Python per request costs (bench/floor_proxy.py).
    floor = start_floor_proxy(stack, free_port(), up_port)
    targets["python-floor"] = f"http://127.0.0.1:{floor.port}"
    proxies["python-floor"] = floor.pid
    if not args.no_mitm and not args.tiny and mitm_available():
        mitm = start_mitmproxy(stack, free_port(), upstream)
        targets["mitmproxy"] = f"http://127.0.0.1:{mitm.port}"
        proxies["mitmproxy"] = mitm.pid
    out: dict[str, object] = {"targets": list(targets)}
    steps = [
        ("1", "throughput", lambda: scenarios.throughput(targets, proxies, settings)),
        ("2", "latency", lambda: scenarios.latency(targets, settings)),
        ("3", "streaming", lambda: scenarios.streaming(_streamers(targets), pids, settings)),
        ("4", "distant", lambda: scenarios.distant(stack, tls_port, cert, settings)),
        ("5", "storm", lambda: scenarios.storm(stack, settings)),
        ("6", "footprint", lambda: scenarios.footprint(stack, up_port, settings)),
        ("7", "hot_path", lambda: _hot_path(stack, settings)),
    ]
    if not args.tiny and not args.only and profile.available():
        url = targets["tower-proxy"] + scenarios.API_PATH
        raw = stack.logs / "profile.raw"
        steps.append(
            (
                "p",
                "profile",
                lambda: profile.record(pids["tower-proxy"], url, seconds=10, top=15, raw=raw),
            )
        )
        only.add("p")
    for number, name, measure in steps:
        if number in only:
            started = time.monotonic()
            print(f"bench: ({number}) {name} ...", file=sys.stderr, flush=True)
            out[name] = measure()
            print(
                f"bench: ({number}) {name} done in {time.monotonic() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    return out


def _hot_path(stack: Stack, settings: Settings) -> dict[str, object]:
    """(7) µs of CPU per proxied request in-process, without sockets (bench/hot_path.py)."""
    requests = 2000 if settings.rounds == 1 and settings.seconds <= 1 else 20000
    out: dict[str, object] = {"requests": requests, "build": hot_path.build()}
    for level in ("info", "warning"):
        rounds = hot_path.measure(
            requests=requests, rounds=max(3, settings.rounds), log_level=level, work=stack.work
        )
        out[level] = {"median_us": statistics.median(rounds), "rounds_us": rounds}
    return out


def _streamers(targets: dict[str, str]) -> dict[str, str]:
    # mitmproxy is left out of the 1 GiB download: at its speed one round
    # alone would take minutes, and the point here is tower-proxy vs nginx.
    # The floor has no flow control: it would buffer what the client is slow to take.
    return {name: url for name, url in targets.items() if name not in ("mitmproxy", "python-floor")}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if wrk_path() is None or (shutil.which("nginx") or "") == "":
        print("bench: wrk and nginx are required (scripts/setup.d/30-bench.sh)", file=sys.stderr)
        return 2
    results = run(args)
    out = args.out or (ROOT / "bench" / "results" if args.tiny else ROOT / "docs")
    out.mkdir(parents=True, exist_ok=True)
    raw = args.out or ROOT / "bench" / "results"  # the numbers behind the report
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    command = shlex.join(["bench/run", *(argv if argv is not None else sys.argv[1:])])
    print(report.table(results))
    report.write_markdown(out / "benchmarks.md", results, command=command)
    if report.write_chart(out / "benchmarks.png", results):
        print(f"bench: chart written to {out / 'benchmarks.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
