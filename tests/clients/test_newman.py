"""examples/postman: the collection a user imports, run with newman against sandbox + proxy.

Each run writes newman's own summary table to LOG_DIR/client-newman*.log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .conftest import EXAMPLES, NEWMAN, Stack, run_tool, tool
from .endpoints import ENDPOINTS

POSTMAN = EXAMPLES / "postman"
COLLECTION = POSTMAN / "tower-proxy.postman_collection.json"
ENVIRONMENT = POSTMAN / "tower-proxy.postman_environment.json"
REVOKE_BEFORE = "Update the todo"  # a request in the middle of the collection
_VARIABLE = re.compile(r"\{\{[^}]+\}\}")


def _requests(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "request" in node:
        return [node]
    return [leaf for child in node.get("item", []) for leaf in _requests(child)]


def _endpoint(request: dict[str, Any]) -> tuple[str, str] | None:
    """(method, path with `{}` for variables) of a call through the proxy, else None."""
    url = request["url"]
    raw = url if isinstance(url, str) else url["raw"]
    if not raw.startswith("{{base_url}}/"):
        return None  # the file host, or a link taken from a response
    path = raw.removeprefix("{{base_url}}").split("?")[0]
    return request["method"], _VARIABLE.sub("{}", path)


async def _newman(stack: Stack, tmp_path: Path, name: str, *env_vars: str) -> dict[str, Any]:
    report = tmp_path / f"{name}.json"
    sandbox_url = f"--env-var=sandbox_url={stack.sandbox.base}"
    run = await run_tool(
        name,
        tool(NEWMAN),
        "run",
        str(COLLECTION),
        f"--environment={ENVIRONMENT}",
        f"--env-var=base_url={stack.api}",
        sandbox_url,
        *(f"--env-var={value}" for value in env_vars),
        "--reporters=cli,json",
        f"--reporter-json-export={report}",
        "--color=off",
        "--disable-unicode",
    )
    assert report.exists(), run.stdout + run.stderr
    result: dict[str, Any] = json.loads(report.read_text())["run"]
    failures = [f"{f['source'].get('name')}: {f['error']['message']}" for f in result["failures"]]
    assert run.returncode == 0 and not failures, "\n".join(failures) or run.stderr
    return result


def _assertions(result: dict[str, Any]) -> list[str]:
    return [
        check["assertion"]
        for execution in result["executions"]
        for check in execution.get("assertions", [])
    ]


def test_collection_calls_every_endpoint_of_the_api():
    """The collection covers all 59 endpoints of the issue's list, and nothing else."""
    collection = json.loads(COLLECTION.read_text())
    called = {_endpoint(item["request"]) for item in _requests(collection)} - {None}

    assert len(ENDPOINTS) == 59
    assert ENDPOINTS - called == set(), "not called"
    assert called - ENDPOINTS == {("GET", "/no_such_route")}  # the 404 example
    assert collection["auth"] == {"type": "noauth"}


def test_environment_points_at_the_default_proxy_address():
    """The importable environment has base_url = the proxy's default listen address."""
    values = {v["key"]: v["value"] for v in json.loads(ENVIRONMENT.read_text())["values"]}
    assert values["base_url"] == "http://127.0.0.1:8730/api/v1"
    assert values["revoke_before"] == ""


async def test_newman_run_passes_every_assertion(stack: Stack, tmp_path: Path):
    """All 68 requests pass with zero failed assertions; no refresh, no token to the file host."""
    result = await _newman(stack, tmp_path, "newman")

    stats = result["stats"]
    assert stats["requests"] == {"total": 68, "pending": 0, "failed": 0}
    assert stats["assertions"]["failed"] == 0
    assert stats["assertions"]["total"] > 250
    sandbox = await stack.sandbox.stats()
    assert sandbox["token_requests"]["refresh_token"] == 0
    assert sandbox["api_unauthorized"] == 0
    assert sandbox["file_host_authorization_headers"] == 0
    # 66 of the 68 go through the proxy (two go to the file host); none was replayed.
    logged = await stack.sandbox.requests()
    assert sandbox["api_requests"] == len(logged) == 66
    assert all(entry["token_fingerprint"] for entry in logged)


async def test_newman_run_survives_a_token_revoked_midway(stack: Stack, tmp_path: Path):
    """With the token revoked mid-run every request still passes, after exactly one refresh."""
    result = await _newman(stack, tmp_path, "newman-revoked", f"revoke_before={REVOKE_BEFORE}")

    stats = result["stats"]
    assert stats["requests"]["failed"] == 0
    assert stats["assertions"]["failed"] == 0
    # (newman's JSON report lists the execution that ran pm.sendRequest twice.)
    assert "the simulator revoked the token" in _assertions(result)
    sandbox = await stack.sandbox.stats()
    assert sandbox["token_requests"]["refresh_token"] == 1
    assert sandbox["api_unauthorized"] == 1
    # The revoked call was answered 401 once and replayed once: 67 upstream calls.
    assert sandbox["api_requests"] == 67
    fingerprints = [entry["token_fingerprint"] for entry in await stack.sandbox.requests()]
    assert len(set(fingerprints)) == 2  # the first token, then the refreshed one
