"""The command line as users run it: real processes against the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket

import aiohttp

from .conftest import (
    LOG_DIR,
    PYTHON,
    ROOT,
    free_port,
    make_config,
    run_cli,
    wait_until,
    write_config,
)


async def test_login_with_code_then_status_token_logout(sandbox, config, tmp_path):
    """login --code stores a token; status shows no secret; token prints it; logout forgets."""
    path = str(write_config(config, tmp_path / "c.toml"))
    code = sandbox.state.issue_code()
    rc, out, err = await run_cli("login", "--config", path, "--code", code)
    assert rc == 0, err
    assert "Logged in as" in out
    rc, out, _ = await run_cli("status", "--config", path, "--json")
    state = json.loads(out)
    assert rc == 0 and state["logged_in"] and state["generation"] == 1
    stored = config.token_path.read_text()
    assert json.loads(stored)["access_token"] not in out
    rc, out, _ = await run_cli("token", "--config", path)
    assert rc == 0 and out.strip() == json.loads(stored)["access_token"]
    rc, out, _ = await run_cli("logout", "--config", path)
    assert rc == 0 and "forgotten" in out
    rc, out, _ = await run_cli("status", "--config", path)
    assert rc == 1 and "Not logged in" in out


async def test_login_accepts_a_pasted_redirect_url(sandbox, config, tmp_path):
    """The whole redirect URL pasted on stdin is understood."""
    path = str(write_config(config, tmp_path / "c.toml"))
    code = sandbox.state.issue_code()
    pasted = f"https://localhost/callback?code={code}\n"
    rc, _, err = await run_cli("login", "--config", path, "--no-browser", stdin=pasted)
    assert rc == 0, err
    assert "/oauth/authorize?client_id=" in err
    assert json.loads(config.token_path.read_text())["generation"] == 1


async def test_login_redirect_url_flag(sandbox, config, tmp_path):
    """--redirect-url takes the code out of the URL."""
    path = str(write_config(config, tmp_path / "c.toml"))
    code = sandbox.state.issue_code()
    rc, _, err = await run_cli(
        "login",
        "--config",
        path,
        "--redirect-url",
        f"https://localhost/callback?code={code}&state=x",
    )
    assert rc == 0, err


async def test_login_with_a_denied_redirect_url_says_so_and_stores_nothing(
    sandbox, config, tmp_path
):
    """The URL the browser lands on after Deny carries `error`, no code: login reports it
    (before, having no `code=`, the whole URL went to the token endpoint as a code)."""
    path = str(write_config(config, tmp_path / "c.toml"))
    denied = "https://localhost/callback?error=access_denied&error_description=denied+by+user"
    rc, out, err = await run_cli("login", "--config", path, "--redirect-url", denied)
    assert rc == 1
    assert err.splitlines()[-1] == "tower-proxy: access_denied: denied by user"
    assert not config.token_path.exists() and "Traceback" not in err + out


async def test_login_handles_otp_required(make_sandbox, tmp_path):
    """A two-factor account: login asks for the one-time code and succeeds."""
    sandbox = await make_sandbox(otp_code="424242")
    config = make_config(sandbox, tmp_path)
    path = str(write_config(config, tmp_path / "c.toml"))
    code = sandbox.state.issue_code()
    rc, _, err = await run_cli("login", "--config", path, "--code", code, stdin="424242\n")
    assert rc == 0, err
    assert "one-time code" in err
    assert (await sandbox.stats())["token_responses"]["otp_required"] == 1


async def test_token_command_refreshes_an_expired_token(sandbox, config, tmp_path, logged_in):
    """`token` on an expired set refreshes once and prints the new token."""
    path = str(write_config(config, tmp_path / "c.toml"))
    data = json.loads(config.token_path.read_text())
    data["expires_at"] = 1000
    config.token_path.write_text(json.dumps(data))
    rc, out, err = await run_cli("token", "--config", path)
    assert rc == 0, err
    assert out.strip() != logged_in.access_token
    assert await sandbox.refreshes() == 1


async def test_bad_config_exits_2_with_one_line(tmp_path):
    """A bad key: exit 2, one line naming it, no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nlisten = "0.0.0.0:80"\nbogus = 1\n')
    rc, out, err = await run_cli("check-config", "--config", str(path))
    assert rc == 2
    assert err.count("\n") == 1 and "server.bogus" in err
    assert "Traceback" not in err + out


async def test_serve_without_token_exits_2(config, tmp_path):
    """serve with an empty store: one clear line naming the fix, exit 2."""
    path = str(write_config(config, tmp_path / "c.toml"))
    rc, _, err = await run_cli("serve", "--config", path)
    assert rc == 2
    assert "tower-proxy login" in err and "Traceback" not in err


async def test_serve_with_workers_without_token_says_why_and_exits_2(config, tmp_path):
    """The same with `server.workers = 2`: each worker reports its own failure (before,
    os._exit dropped the message and the parent exited 143, from stopping the other)."""
    workers = dataclasses.replace(config.server, workers=2)
    path = str(write_config(dataclasses.replace(config, server=workers), tmp_path / "w.toml"))
    rc, out, err = await run_cli("serve", "--config", path)
    assert rc == 2
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2 and all("run `tower-proxy login` first" in line for line in lines)
    assert "Traceback" not in err + out


async def test_serve_with_workers_on_a_port_in_use_exits_2_naming_it(config, tmp_path):
    """A port another program holds, with `server.workers = 2`: the config error one
    process gives (it was `unexpected error: OSError`, exit 1)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = dataclasses.replace(config.server, workers=2, listen=f"127.0.0.1:{port}")
        path = str(write_config(dataclasses.replace(config, server=server), tmp_path / "p.toml"))
        rc, out, err = await run_cli("serve", "--config", path)
    assert rc == 2
    where = f"127.0.0.1:{port}"
    assert err == f"tower-proxy: config error: server.listen: cannot listen on {where}: " + (
        "Address already in use\n"
    )
    assert "Traceback" not in out


async def test_serve_on_a_unix_socket_in_a_missing_directory_exits_2_naming_it(
    config, sandbox, tmp_path, logged_in
):
    """The directory of a unix: listen address does not exist: a config error naming the key
    (it was `unexpected error: FileNotFoundError`, exit 1)."""
    path = str(write_config(config, tmp_path / "u.toml"))
    where = tmp_path / "missing" / "proxy.sock"
    rc, out, err = await run_cli("serve", "--config", path, "--listen", f"unix:{where}")
    assert rc == 2
    assert f"config error: server.listen: cannot listen on unix:{where}: " in err
    assert "Traceback" not in err + out


async def test_sandbox_refuses_a_port_out_of_range_in_one_usage_line(tmp_path):
    """`sandbox --port 99999`: argparse's usage error, exit 2 (was `unexpected error`, exit 1)."""
    rc, out, err = await run_cli("sandbox", "--port", "99999")
    assert rc == 2
    assert err.splitlines()[-1] == (
        "tower-proxy sandbox: error: argument --port: expected a port from 0 to 65535, got '99999'"
    )
    assert "Traceback" not in err + out


async def test_wrong_client_secret_login_fails_cleanly(sandbox, config, tmp_path):
    """Tower's invalid_client is reported in one line, exit 1."""
    path = tmp_path / "c.toml"
    write_config(config, path)
    path.write_text(path.read_text().replace('"sandbox-secret"', '"wrong-secret-value"'))
    rc, _, err = await run_cli("login", "--config", str(path), "--code", "whatever")
    assert rc == 1
    assert "invalid_client" in err and "Traceback" not in err


async def test_sandbox_command_serves_an_authorized_proxy(tmp_path):
    """`tower-proxy sandbox` prints curl lines and answers through the proxy; SIGTERM exits 0."""
    port = free_port()
    log_path = LOG_DIR / f"sandbox-command-{port}.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "proxy",
            "sandbox",
            "--port",
            str(port),
            "--token-ttl",
            "60",
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        await wait_until(lambda: _printed(log_path, "curl -s"))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/user") as response:
                assert response.status == 200
                assert (await response.json())["data"]["attributes"]["email"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _printed(path, text) -> bool:
    return text in path.read_text()


async def test_serving_and_token_paths_leave_heavy_modules_unimported():
    """A serving proxy imports no aiohttp; the `token` command's path no aiohttp and
    no importlib.metadata (scenario 6 of bench/ times both start-ups)."""
    probe = (
        "import sys, json\n"
        "import proxy.cli\n"
        "token = {m: m in sys.modules for m in ('aiohttp', 'importlib.metadata')}\n"
        "import proxy.app, proxy.server\n"
        "serve = {m: m in sys.modules for m in ('aiohttp',)}\n"
        "print(json.dumps([token, serve]))\n"
    )
    process = await asyncio.create_subprocess_exec(
        PYTHON, "-c", probe, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    token, serve = json.loads(out)
    assert token == {"aiohttp": False, "importlib.metadata": False}
    assert serve == {"aiohttp": False}
