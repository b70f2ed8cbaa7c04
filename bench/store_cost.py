"""The cost of the shared token store per request: `store = "redis"` over `store = "file"`.

    python -m bench.store_cost [--rounds 5] [--seconds 3] [--connections 16]

Two `tower-proxy serve` processes, identical but for the store, in front of
the same nginx upstream (a small JSON answer); a real `redis-server` on a free
port holds the redis proxy's token set, moved there from a token file with
`tower-proxy migrate-store` (the path a user takes).  wrk measures each proxy
in interleaved rounds (the order alternates, so drift hits both alike); the
report is the median requests per second of each and their ratio, measured in
the same run.  By design a request costs no Redis round trip (the token is
held in memory and changes arrive by pub/sub), so the ratio should be ~1.0.

Needs wrk, nginx and redis-server (scripts/setup.d/10-redis.sh, 30-bench.sh).
Uses the helpers of bench/stack.py and bench/load.py; runs in under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .load import WrkResult, wrk
from .stack import (
    SMALL_JSON,
    TOWER_PROXY,
    Proc,
    Stack,
    free_port,
    start_nginx,
    wait_for_http,
    wait_for_port,
    write_proxy_config,
    write_token_file,
)

STORES = ("file", "redis")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = [tool for tool in ("wrk", "nginx", "redis-server") if shutil.which(tool) is None]
    if missing:
        print(f"store_cost: missing {', '.join(missing)} (run scripts/setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-store-cost-") as tmp:
        work = Path(tmp)
        logs = Path(args.logs) if args.logs else work
        logs.mkdir(parents=True, exist_ok=True)
        stack = Stack(work=work, logs=logs)
        try:
            urls = _start(stack, work)
            rates = _measure(urls, args)
        finally:
            stack.close()
    print(_report(rates, args))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per proxy per round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--logs", default="", help="directory for the children's logs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _start(stack: Stack, work: Path) -> dict[str, str]:
    """Redis, the upstream and both proxies; the URL each proxy is measured on."""
    redis = _start_redis(stack)
    upstream_port = free_port()
    start_nginx(stack, "store-cost-upstream", _upstream_server(upstream_port), upstream_port)
    env = {
        "file": {},
        "redis": {
            "TOWER_PROXY_TOKENS_STORE": "redis",
            "TOWER_PROXY_TOKENS_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "TOWER_PROXY_TOKENS_REDIS_KEY_PREFIX": "bench-store-cost:",
        },
    }
    urls = {}
    for store in STORES:
        port = free_port()
        config = write_proxy_config(
            work / f"{store}.toml",
            api_url=f"http://127.0.0.1:{upstream_port}/api/v1",
            oauth_url=f"http://127.0.0.1:{upstream_port}/oauth",
            port=port,
            token_path=work / store / "token.json",
        )
        write_token_file(work / store / "token.json")
        if store == "redis":
            _migrate_to_redis(config, env[store])
        proc = stack.spawn(
            f"store-cost-{store}", [*TOWER_PROXY, "serve", "--config", str(config)], port,
            env=env[store],
        )  # fmt: skip
        wait_for_http(proc, "/-/readyz")
        urls[store] = f"http://127.0.0.1:{port}/api/v1/projects/bench"
    return urls


def _start_redis(stack: Stack) -> Proc:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = stack.spawn("store-cost-redis", [*argv, "--appendonly", "no"], port)
    wait_for_port(proc)
    return proc


def _upstream_server(port: int) -> str:
    body = SMALL_JSON.replace("'", "\\'")
    return f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        location /api/v1/ {{ default_type application/json; return 200 '{body}'; }}
    }}"""


def _migrate_to_redis(config: Path, env: dict[str, str]) -> None:
    argv = [*TOWER_PROXY, "migrate-store", "--config", str(config), "--from", "file"]
    done = subprocess.run(
        [*argv, "--to", "redis"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate-store failed: {done.stderr.strip()}")


def _measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {store: [] for store in STORES}
    for store in STORES:  # warm-up: connections, caches, the JIT-less interpreter's imports
        _run_wrk(urls[store], args, seconds=1)
    for round_ in range(args.rounds):
        order = STORES if round_ % 2 == 0 else STORES[::-1]
        for store in order:
            rates[store].append(_run_wrk(urls[store], args, seconds=args.seconds).requests_per_s)
    return rates


def _run_wrk(url: str, args: argparse.Namespace, *, seconds: float) -> WrkResult:
    result = wrk(url, connections=args.connections, threads=1, seconds=seconds)
    if result.bad:
        raise RuntimeError(f"{result.bad} failed requests against {url}")
    return result


def _report(rates: dict[str, list[float]], args: argparse.Namespace) -> str:
    medians = {store: statistics.median(values) for store, values in rates.items()}
    ratio = medians["redis"] / medians["file"]
    # Each round's pair ran back to back: their ratio is immune to slow drift of the machine.
    paired = statistics.median(r / f for r, f in zip(rates["redis"], rates["file"], strict=True))
    if args.json:
        result = {"rounds": rates, "medians": medians, "ratio": ratio, "paired_ratio": paired}
        return json.dumps(result)
    lines = [
        f"store cost: {args.rounds} interleaved rounds x {args.seconds:g}s per proxy, "
        f"wrk -t1 -c{args.connections}, small JSON through `tower-proxy serve`",
        *(
            f"  {store:<5} median {medians[store]:9.0f} req/s   rounds: "
            + " ".join(f"{value:.0f}" for value in rates[store])
            for store in STORES
        ),
        f"  ratio redis/file: {ratio:.3f} (of the medians), {paired:.3f} (median of the rounds)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
