"""`python -m proxy.sandbox`: run the simulator until SIGTERM or SIGINT.

Prints exactly one line on stdout once both hosts listen:
`sandbox listening on http://HOST:PORT (files on http://HOST:FPORT)`.
Exit 0 on a signal, 2 with one line on stderr for bad options or seed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .run import start_sandbox
from .settings import SandboxSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxy.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="API port (0: pick one)")
    parser.add_argument("--file-port", type=int, default=0, help="file host port (0: pick one)")
    parser.add_argument("--token-ttl", type=int, default=7199, help="expires_in of new tokens")
    parser.add_argument("--otp-code", help="enable two-factor login with this one-time code")
    parser.add_argument("--seed", help="seed data JSON file (default: the bundled seed.json)")
    parser.add_argument("--test-routes", action="store_true", help="mount /api/v1/_test/")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--token-delay-ms", type=int, default=0)
    parser.add_argument(
        "--token-failures", type=int, default=0, help="fail the next N token endpoint calls"
    )
    parser.add_argument(
        "--token-fail-seconds",
        type=float,
        default=0.0,
        help="fail every token endpoint call for this long after start",
    )
    parser.add_argument("--random-seed", type=int, help="repeatable ids and injected errors")
    return parser


def settings_from(args: argparse.Namespace) -> SandboxSettings:
    return SandboxSettings(
        token_ttl=args.token_ttl,
        otp_code=args.otp_code,
        seed_file=args.seed,
        test_routes=args.test_routes,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        token_delay_ms=args.token_delay_ms,
        token_failures=args.token_failures,
        token_fail_seconds=args.token_fail_seconds,
        random_seed=args.random_seed,
    )


async def _run(settings: SandboxSettings, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_sandbox(settings, args.host, args.port, args.file_port)
    try:
        print(f"sandbox listening on {running.api_base} (files on {running.file_base})", flush=True)
        await stop.wait()
    finally:
        await running.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from(args)
        asyncio.run(_run(settings, args))
    except (ValueError, OSError) as error:  # SeedError is a ValueError
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
