"""Starting and stopping everything a benchmark run measures, on loopback.

Every component is a child process on a free port with its output in the
run's log directory: nginx (upstream, TLS upstream, nginx-as-proxy),
tower-proxy (`tower-proxy serve`), the plain aiohttp proxy, mitmproxy in
reverse mode, the 25 ms relay and the sandbox.  `Stack` stops whatever it
started, in reverse order, even when a scenario fails half-way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_VENV = ROOT / ".venv"
PYTHON = str(DEV_VENV / "bin" / "python") if DEV_VENV.exists() else sys.executable
TOWER_PROXY = [PYTHON, "-m", "proxy"]
MITMDUMP = ROOT / "bench" / ".venv-mitm" / "bin" / "mitmdump"
BENCH_TOKEN = "bench-access-token-not-a-secret"  # what every proxy injects upstream
SMALL_JSON = (
    '{"data":{"type":"projects","id":"0f3c9a","attributes":{"name":"Bench",'
    '"description":"a small JSON document","archived":false}}}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of one process (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants so far (workers included)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        pending += [int(child) for child in children]
    return total / _TICK


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Stack:
    """The processes of one run; `close()` stops them all."""

    work: Path  # configs, certificates, the download file
    logs: Path  # every child's stdout/stderr
    # The venv whose `tower-proxy` is measured.  bench/run installs the package
    # there as a user gets it (a wheel: runtime dependencies only, bytecode
    # compiled at install); the development venv also holds the test tools
    # (httpie brings rich, which structlog imports), and with
    # PYTHONDONTWRITEBYTECODE an editable install compiles at every start.
    product: Path = DEV_VENV
    # A venv with the plain-Python wheel (no compiler at install), measured
    # beside the compiled one when given.
    pure: Path | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def tower_proxy(self) -> list[str]:
        """The measured `tower-proxy` command: its console script, so that it
        imports the venv's installed copy, not the checkout in the working directory."""
        return [str(self.product / "bin" / "tower-proxy")]

    def spawn(
        self, name: str, argv: Sequence[str], port: int, *, env: dict[str, str] | None = None
    ) -> Proc:
        log = (self.logs / f"bench-{name}.log").open("ab")
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        log.close()
        proc = Proc(name, popen, port)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def wait_for_port(proc: Proc, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{proc.name} did not listen on {proc.port} within {timeout}s")


def wait_for_http(proc: Proc, path: str, *, timeout: float = 30.0) -> float:
    """Poll until GET path answers 200; return the seconds it took from now."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{proc.port}{path}"
    while time.monotonic() - started < timeout:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"{proc.name} was not ready at {url} within {timeout}s")


# -- nginx -------------------------------------------------------------------


def _nginx_conf(work: Path, name: str, servers: str) -> Path:
    prefix = work / name
    prefix.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nopush on;
{servers}
}}
"""
    )
    return conf


def start_nginx(stack: Stack, name: str, servers: str, port: int) -> Proc:
    conf = _nginx_conf(stack.work, name, servers)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]
    proc = stack.spawn(name, argv, port)
    wait_for_port(proc)
    return proc


def upstream_servers(port: int, tls_port: int, files: Path, cert: Path, key: Path) -> str:
    """A fast upstream: a small JSON under /api/v1/, files, and the same over TLS."""
    body = SMALL_JSON.replace("'", "\\'")
    locations = f"""
        location /api/v1/files/ {{ alias {files}/; default_type application/octet-stream; }}
        location /api/v1/ {{ default_type application/json; return 200 '{body}'; }}"""
    return f"""
    server {{
        listen 127.0.0.1:{port} reuseport;{locations}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;{locations}
    }}"""


def proxy_servers(port: int, upstream_port: int) -> str:
    """nginx as the reference proxy: inject the header, keep-alive to the upstream."""
    return f"""
    upstream api {{ server 127.0.0.1:{upstream_port}; keepalive 64; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {BENCH_TOKEN}";
            proxy_max_temp_file_size 0;
        }}
    }}"""


def make_certificate(work: Path) -> tuple[Path, Path]:
    cert, key = work / "upstream.pem", work / "upstream.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


# -- the proxies -------------------------------------------------------------


def write_token_file(path: Path, access_token: str = BENCH_TOKEN) -> None:
    """A stored token set as `tower-proxy login` writes it, valid for a day."""
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    token = {
        "access_token": access_token,
        "refresh_token": "bench-refresh-token-not-a-secret",
        "expires_at": now + 86400,
        "email": "bench@example.invalid",
        "generation": 1,
        "obtained_at": now,
        "obtained_by": "login",
        "scope": "",
    }
    path.write_text(json.dumps(token))
    path.chmod(0o600)


def write_proxy_config(
    path: Path,
    *,
    api_url: str,
    oauth_url: str,
    port: int,
    token_path: Path,
    client_id: str = "bench-client",
    client_secret: str = "bench-client-secret",
    ca_file: str = "",
    workers: int = 0,
    max_connections: int = 0,
    log_level: str = "info",
) -> Path:
    workers_line = f"workers = {workers}\n" if workers else ""
    if max_connections:
        workers_line += f"max_connections = {max_connections}\n"
    path.write_text(
        f"""[tower]
client_id = {json.dumps(client_id)}
client_secret = {json.dumps(client_secret)}
api_url = {json.dumps(api_url)}
oauth_url = {json.dumps(oauth_url)}
ca_file = {json.dumps(ca_file)}

[server]
listen = "127.0.0.1:{port}"
{workers_line}
[tokens]
path = {json.dumps(str(token_path))}

[log]
level = "{log_level}"
format = "json"
"""
    )
    return path


def start_tower_proxy(
    stack: Stack, name: str, config: Path, port: int, *, venv: Path | None = None
) -> tuple[Proc, float]:
    """`tower-proxy serve` (the product's, or `venv`'s); returns it and the seconds to ready."""
    started = time.monotonic()
    command = [str(venv / "bin" / "tower-proxy")] if venv else stack.tower_proxy
    proc = stack.spawn(name, [*command, "serve", "--config", str(config)], port)
    wait_for_http(proc, "/-/readyz")
    return proc, time.monotonic() - started


def start_plain_proxy(stack: Stack, port: int, upstream: str) -> Proc:
    argv = [PYTHON, "-m", "bench.plain_proxy", "--port", str(port), "--upstream", upstream]
    proc = stack.spawn("plain-aiohttp", argv, port, env={"BENCH_TOKEN": BENCH_TOKEN})
    wait_for_port(proc)
    return proc


def start_floor_proxy(stack: Stack, port: int, upstream_port: int) -> Proc:
    upstream = f"127.0.0.1:{upstream_port}"
    argv = [PYTHON, "-m", "bench.floor_proxy", "--port", str(port), "--upstream", upstream]
    proc = stack.spawn("python-floor", argv, port, env={"BENCH_TOKEN": BENCH_TOKEN})
    wait_for_port(proc)
    return proc


def mitm_available() -> bool:
    return MITMDUMP.exists()


def start_mitmproxy(stack: Stack, port: int, upstream: str) -> Proc:
    argv = [
        str(MITMDUMP), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
        "--listen-port", str(port), "-s", str(ROOT / "bench" / "mitm_addon.py"), "-q",
        "--set", "stream_large_bodies=1m", "--set", f"confdir={stack.work / 'mitm'}",
    ]  # fmt: skip
    proc = stack.spawn("mitmproxy", argv, port, env={"BENCH_TOKEN": BENCH_TOKEN})
    wait_for_port(proc, timeout=60)
    return proc


def start_relay(stack: Stack, port: int, target_port: int, delay_ms: float) -> Proc:
    argv = [
        PYTHON, "-m", "bench.relay", "--port", str(port), "--target-port", str(target_port),
        "--delay-ms", str(delay_ms),
    ]  # fmt: skip
    proc = stack.spawn("relay", argv, port)
    wait_for_port(proc)
    return proc


def start_sandbox(stack: Stack, port: int) -> Proc:
    argv = [PYTHON, "-m", "proxy.sandbox", "--test-routes", "--port", str(port)]
    proc = stack.spawn("sandbox", argv, port)
    wait_for_port(proc)
    return proc
