# ruff: noqa: RUF001, E501
"""Turning one run's results into the console table, docs/benchmarks.md and the chart.

Targets (issue 7) are checked here against the ratios of this run only.
The chart is drawn by `bench/chart.py` in the bench venv (matplotlib lives
there, not in the project's dependencies); without it the chart is skipped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .stack import ROOT, SMALL_JSON

CHART_PYTHON = ROOT / "bench" / ".venv-mitm" / "bin" / "python"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _check(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target this run has data for."""
    rows: list[tuple[str, str, str]] = []
    tp = results.get("throughput")
    if tp:
        one = tp["tower-proxy"]["ratio"]
        rows.append(("throughput ≥ 0.25× nginx (1 process)", f"{one:.3f}×", _check(one >= 0.25)))
        plain = tp["tower-proxy"]["median_rps"] / tp["plain-aiohttp"]["median_rps"]
        rows.append(("throughput ≥ 2.5× plain aiohttp", f"{plain:.2f}×", _check(plain >= 2.5)))
        for name in tp:
            if name.startswith("tower-proxy-") and name.endswith("w"):
                scale = tp[name]["median_rps"] / tp["tower-proxy"]["median_rps"]
                rows.append(
                    (
                        f"{name}: scales with cores (vs 1 process)",
                        f"{scale:.2f}×",
                        _check(scale > 1.3),
                    )
                )
        if "mitmproxy" in tp:
            mitm = tp["tower-proxy"]["median_rps"] / tp["mitmproxy"]["median_rps"]
            rows.append(("throughput ≥ 20× mitmproxy", f"{mitm:.1f}×", _check(mitm >= 20)))
        rows += _cpu_rows(tp)
    lat = results.get("latency")
    if lat:
        p50, p99 = lat["tower-proxy"]["added_p50_ms"], lat["tower-proxy"]["added_p99_ms"]
        rows.append(("added latency p50 ≤ 0.25 ms", f"{p50:.3f} ms", _check(p50 <= 0.25)))
        rows.append(("added latency p99 ≤ 1.5 ms", f"{p99:.3f} ms", _check(p99 <= 1.5)))
    st = results.get("streaming")
    if st:
        ratio, rss = st["tower-proxy"]["ratio"], st["tower-proxy"]["rss_growth_mib"]
        rows.append(("download ≥ 0.8× nginx MB/s", f"{ratio:.2f}×", _check(ratio >= 0.8)))
        rows.append(("download RSS growth < 50 MiB", f"{rss:.1f} MiB", _check(rss < 50)))
    far = results.get("distant")
    if far:
        for key, label in [
            ("ratio", "distant: median call ≤ 0.40× direct"),
            ("first_call_ratio", "distant: first call after start ≤ 0.40×"),
            ("after_idle_ratio", f"distant: call after {far['idle_seconds']:.0f} s idle ≤ 0.40×"),
        ]:
            if far.get(key) is not None:
                rows.append((label, f"{far[key]:.2f}×", _check(far[key] <= 0.40)))
    storm = results.get("storm")
    if storm:
        rows.append(
            (
                f"storm: exactly 1 refresh for {storm['requests']} requests",
                f"{_per_round(storm['refreshes'])} ({storm['failed']} failed)",
                _check(set(storm["refreshes"]) == {1} and storm["failed"] == 0),
            )
        )
        rows.append(
            (
                "storm: p99 ≤ upstream p99 + token RTT + 20 ms",
                f"{storm['p99_ms']:.1f} ≤ {storm['budget_ms']:.1f} ms",
                _check(storm["p99_ms"] <= storm["budget_ms"]),
            )
        )
        if "valid_p99_ms" in storm:
            rows.append(
                (
                    "storm: p99 on the revoked token over p99 on a valid one, through the proxy",
                    f"{storm['p99_ms'] / storm['valid_p99_ms']:.2f}×",
                    "(information)",
                )
            )
    fp = results.get("footprint")
    if fp:
        rows.append(
            ("idle RSS ≤ 60 MiB", f"{fp['idle_rss_mib']:.1f} MiB", _check(fp["idle_rss_mib"] <= 60))
        )
        rows.append(
            ("ready ≤ 1 s after start", f"{fp['ready_s']:.2f} s", _check(fp["ready_s"] <= 1))
        )
        rows.append(
            (
                "`tower-proxy token` ≤ 0.3 s",
                f"{fp['token_command_s']:.2f} s",
                _check(fp["token_command_s"] <= 0.3),
            )
        )
    return rows


def _cpu_rows(tp: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Others' CPU per request over tower-proxy's: how far ahead it would be with a core each."""
    own = tp["tower-proxy"].get("cpu_us_per_request")
    rows: list[tuple[str, str, str]] = []
    for name, entry in tp.items():
        other = entry.get("cpu_us_per_request")
        if not own or not other or name in ("tower-proxy", "tower-proxy-nolog"):
            continue
        if name == "tower-proxy-pure":
            label = f"{name}: CPU per request vs the compiled wheel"
        elif name.startswith("tower-proxy-"):
            label = f"{name}: CPU per request vs 1 process"
        else:
            label = f"CPU per request: {name}'s ÷ tower-proxy's"
        rows.append((label, f"{other / own:.2f}×", "(information)"))
    return rows


def _comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    tp, lat, st = (
        results.get("throughput", {}),
        results.get("latency", {}),
        results.get("streaming", {}),
    )
    rows = []
    for name in results.get("targets", []):
        t, la, s = tp.get(name, {}), lat.get(name, {}), st.get(name, {})
        rows.append(
            [
                name,
                _fmt(t.get("median_rps"), 0),
                _fmt(t.get("ratio"), 3),
                _fmt(t.get("cpu_us_per_request"), 1),
                _fmt(la.get("added_p50_ms"), 3) if name != "direct" else "0",
                _fmt(la.get("added_p99_ms"), 3) if name != "direct" else "0",
                _fmt(s.get("median_mb_per_s"), 0),
                _fmt(s.get("ratio"), 2),
                _fmt(s.get("rss_growth_mib"), 1),
            ]
        )
    return rows


_HEAD = [
    "target",
    "req/s (32 conn)",
    "× nginx-proxy",
    "proxy CPU µs/req",
    "added p50 ms",
    "added p99 ms",
    "download MB/s",
    "× nginx-proxy",
    "RSS growth MiB",
]


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    parts = [_markdown_table(_HEAD, _comparison_rows(results)), ""]
    parts.append(
        _markdown_table(["target", "this run", "verdict"], [list(r) for r in targets(results)])
    )
    return "\n".join(parts)


def _details(results: dict[str, Any]) -> str:
    lines = []
    far = results.get("distant")
    if far:
        lines.append(
            f"- Distant upstream (25 ms each way, TLS 1.3): direct one-shot HTTPS call "
            f"{far['direct_ms']:.1f} ms median, through tower-proxy {far['proxy_ms']:.1f} ms "
            f"({far['calls']} calls each, interleaved); first call after start-up "
            f"{far['first_call_ms']:.1f} ms"
            + (
                f"; after {far['idle_seconds']:.0f} s idle {far['after_idle_ms']:.1f} ms."
                if far.get("after_idle_ms") is not None
                else "."
            )
        )
    storm = results.get("storm")
    if storm:
        lines.append(
            f"- Refresh storm: {storm['requests']} concurrent requests on a revoked token, "
            f"{storm['rounds']} rounds: refreshes {_per_round(storm['refreshes'])}; requests sent "
            f"upstream with the revoked token {_per_round(storm['upstream_401s'])}; "
            f"{storm['failed']} failed in all, p99 {storm['p99_ms']:.1f} ms "
            f"(rounds: {_ms_list(storm['p99_rounds_ms'])}); the same requests straight to the "
            f"sandbox with a valid token, in the same rounds, p99 {storm['upstream_p99_ms']:.1f} ms "
            f"(rounds: {_ms_list(storm['upstream_p99_rounds_ms'])}), one token round trip "
            f"{storm['token_round_trip_ms']:.1f} ms (medians)."
        )
        if "valid_p99_ms" in storm:
            lines.append(
                f"  Through the proxy with a valid token, in the same rounds: p99 "
                f"{storm['valid_p99_ms']:.1f} ms; the proxy's CPU for a revoked burst "
                f"{storm['proxy_cpu_ms']:.0f} ms (medians).  The proxy, the sandbox and the "
                "load generator share the cores, so the proxy's CPU per burst shows in the p99."
            )
    fp = results.get("footprint")
    if fp:
        lines.append(
            f"- Footprint: idle RSS {fp['idle_rss_mib']:.1f} MiB, spawn to ready {fp['ready_s']:.2f} s, "
            f"`tower-proxy token` {fp['token_command_s']:.2f} s (medians)."
        )
    hot = results.get("hot_path")
    if hot:
        lines.append(
            f"- CPU per proxied request, in-process without sockets (`python -m bench.hot_path`, "
            f"the {hot.get('build', 'plain Python')} modules of the benchmark's own venv, "
            f"{hot['requests']} requests a round, median of rounds): {hot['info']['median_us']:.1f} µs "
            f"with the canonical log line, {hot['warning']['median_us']:.1f} µs without it."
        )
    return "\n".join(lines)


def _per_round(counts: list[int]) -> str:
    """The same count in every round once, else each round's."""
    if len(set(counts)) == 1:
        return f"{counts[0]} each round" if len(counts) > 1 else str(counts[0])
    return ", ".join(map(str, counts))


def _ms_list(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def write_markdown(path: Path, results: dict[str, Any], *, command: str) -> None:
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    text = f"""# Benchmarks

tower-proxy measured side by side with the alternatives a user has, in one run
on one machine (issue 7).  The machine is shared and noisy, so what counts
are the **ratios** — each taken between runs of the same round, then the
median over rounds — not the absolute numbers.

![throughput and added latency](benchmarks.png)

## How it was run

```
{command}
```

- Machine: {machine.get("cpu", "?")}, {machine.get("cores", "?")} cores, Linux {machine.get("kernel", "?")},
  Python {machine.get("python", "?")}, {machine.get("nginx", "?")}, {machine.get("wrk", "?")};
  tower-proxy {machine.get("product", "from the development venv")};
  1-minute load average {machine.get("load", "?")} (start → end of the run).
{("- " + results["note"]) if results.get("note") else ""}
- Upstream: nginx (Debian) returning a {len(SMALL_JSON)}-byte JSON document under `/api/v1/`, and a
  sparse {settings.get("download_bytes", 0) / 1024**3:g} GiB file for the download, all on loopback.
- Targets: the upstream **direct**; **nginx-proxy** (`proxy_set_header Authorization`, keep-alive
  upstream pool — the reference); **tower-proxy** (`tower-proxy serve`, default settings, JSON
  canonical log line per request written to a file); **tower-proxy-nolog** (the same with
  `log.level = "warning"`: no per-request line); **tower-proxy-Nw** (`[server] workers = N`);
  **tower-proxy-pure** (the plain-Python wheel, what a machine without a C compiler installs;
  the other tower-proxy rows run the compiled wheel when the product line above says so);
  **plain-aiohttp** (`bench/plain_proxy.py`, a minimal streaming proxy); **mitmproxy**
  (`mitmdump --mode reverse:` with `bench/mitm_addon.py`; left out of the download);
  **python-floor** (`bench/floor_proxy.py`: a yardstick, not a rival — protocol callbacks on
  uvloop and httptools, header lines passed on as bytes, no feature at all; what tower-proxy
  spends above it is its features and checks; left out of the download: no flow control).
- Load: wrk, 32 connections / 2 threads for throughput, 1 connection for latency,
  {settings.get("seconds")} s per run, {settings.get("rounds")} interleaved rounds (the order
  rotates each round); curl for downloads and one-shot calls; {settings.get("storm_requests")} concurrent aiohttp requests
  for the refresh storm (sandbox: `python -m proxy.sandbox --test-routes`).
- "proxy CPU µs/req": user + system CPU of the proxy's whole process tree (nginx's and
  tower-proxy's workers included) during each throughput run, over the requests wrk completed;
  median over rounds.  The load generator and the upstream share the cores, so req/s depends on
  how the scheduler splits them; CPU per request much less so.

## Results

{_markdown_table(_HEAD, _comparison_rows(results))}

{_details(results)}

## Targets

{_markdown_table(["target", "this run", "verdict"], [list(r) for r in targets(results)])}
{_profile(results)}"""
    path.write_text(text)


def _profile(results: dict[str, Any]) -> str:
    summary = results.get("profile")
    if not summary:
        return ""
    return f"""
## Where tower-proxy's time goes

py-spy (`bench/profile.py`) sampling the one-process tower-proxy at 200 Hz for 10 s
while wrk drives it with 32 connections, in the same run:

```
{summary}
```
"""


def write_chart(path: Path, results: dict[str, Any]) -> bool:
    """Draw the chart with bench/chart.py in the bench venv; False when unavailable."""
    if not CHART_PYTHON.exists():
        return False
    data = path.with_suffix(".json.tmp")
    data.write_text(json.dumps(results))
    try:
        subprocess.run(
            [str(CHART_PYTHON), str(ROOT / "bench" / "chart.py"), str(data), str(path)],
            check=True,
            capture_output=True,
        )
    finally:
        data.unlink()
    return True
