"""mitmproxy addon for the benchmark: the usual do-it-yourself header script.

mitmdump --mode reverse:http://127.0.0.1:8080 -s bench/mitm_addon.py
"""

from __future__ import annotations

import os

TOKEN = os.environ.get("BENCH_TOKEN", "")


def request(flow) -> None:  # type: ignore[no-untyped-def]
    flow.request.headers["Authorization"] = f"Bearer {TOKEN}"
