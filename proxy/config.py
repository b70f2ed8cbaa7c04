"""Configuration: frozen dataclasses, loaded once from TOML, environment and flags.

Precedence is command-line flag > environment > file > default.  Every key can
be set as `TOWER_PROXY_<SECTION>_<KEY>`; `TOWER_CLIENT_ID`, `TOWER_CLIENT_SECRET`
and `TOWER_PROXY_CONFIG` are accepted too.  All validation happens here, at
load time, and every error names the key it is about.  Nothing else in the
package parses configuration.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yarl import URL

from .errors import ConfigError

OOB_URI = "urn:ietf:wg:oauth:2.0:oob"
ENV_PREFIX = "TOWER_PROXY_"
DEFAULT_CONFIG_PATH = "~/.config/tower-proxy/config.toml"
_SECRET = {"secret": True}
_SIZE = {"size": True}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


@dataclass(frozen=True, slots=True)
class TowerConfig:
    client_id: str = ""
    client_secret: str = field(default="", metadata=_SECRET)
    client_secret_file: str = ""
    redirect_uri: str = OOB_URI
    scopes: str = ""
    api_url: str = "https://tower.im/api/v1"
    oauth_url: str = "https://tower.im/oauth"
    ca_file: str = ""
    use_env_proxy: bool = True  # HTTPS_PROXY/NO_PROXY for api_url and the token endpoint
    max_connections: int = 64  # open to api_url at once; more requests wait (0: no limit)

    @property
    def token_url(self) -> str:
        return self.oauth_url.rstrip("/") + "/token"

    @property
    def authorize_url(self) -> str:
        return self.oauth_url.rstrip("/") + "/authorize"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class UnixAddress:
    path: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:8730"
    prefix: str = "/api/v1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    inbound_keys_file: str = ""
    max_body_size: int = field(default=64 * 1024**2, metadata=_SIZE)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    rewrite_links: bool = True
    drain_timeout: float = 30.0
    shutdown_delay: float = 0.0
    admin_listen: str = ""  # probes, metrics, quit on their own address; "" = on listen
    workers: int = 1  # processes serving `listen` together (SO_REUSEPORT); TCP only
    event_loop: str = "auto"  # "auto" (uvloop when installed), "uvloop" or "asyncio"
    # Security (issue 4): who may connect, what may pass, how much a client may hold.
    unix_socket_mode: str = "0600"
    allowed_uids: tuple[int, ...] = ()  # unix socket: peer uids (SO_PEERCRED) allowed
    allow_paths: tuple[str, ...] = ()  # regexes on the decoded path under prefix
    deny_paths: tuple[str, ...] = ()
    read_only: bool = False  # only GET, HEAD, OPTIONS are forwarded
    max_header_size: int = field(default=16 * 1024, metadata=_SIZE)
    max_connections: int = 512
    client_timeout: float = 30.0  # idle keep-alive, request head, stalled body

    @property
    def address(self) -> TcpAddress | UnixAddress:
        return parse_listen(self.listen)

    @property
    def socket_mode(self) -> int:
        return int(self.unix_socket_mode, 8)

    @property
    def admin_address(self) -> TcpAddress | UnixAddress | None:
        return parse_listen(self.admin_listen) if self.admin_listen else None


@dataclass(frozen=True, slots=True)
class TokensConfig:
    store: str = "file"
    path: str = "~/.local/state/tower-proxy/token.json"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=_SECRET)
    redis_password: str = field(default="", metadata=_SECRET)  # overrides one in the URL
    redis_password_file: str = ""
    redis_key_prefix: str = "tower-proxy:"
    redis_lock_ttl: float = 10.0  # seconds; a dead lock holder frees the fleet after this
    refresh_margin: float = 300.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    tower: TowerConfig = TowerConfig()
    server: ServerConfig = ServerConfig()
    tokens: TokensConfig = TokensConfig()
    log: LogConfig = LogConfig()
    source: str = ""  # the config file read, or "" when none

    @property
    def token_path(self) -> Path:
        return Path(self.tokens.path).expanduser()


_SECTIONS: dict[str, type[Any]] = {
    "tower": TowerConfig,
    "server": ServerConfig,
    "tokens": TokensConfig,
    "log": LogConfig,
}
_ENV_ALIASES = {
    "TOWER_CLIENT_ID": ("tower", "client_id"),
    "TOWER_CLIENT_SECRET": ("tower", "client_secret"),
}
Overrides = Mapping[str, Mapping[str, object]]


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
) -> Config:
    """Build the effective config; raise ConfigError naming the bad key."""
    env = os.environ if env is None else env
    file_path = _config_path(path, env)
    layers = [_read_toml(file_path) if file_path else {}, _env_layer(env), overrides or {}]
    merged: dict[str, dict[str, tuple[object, bool]]] = {name: {} for name in _SECTIONS}
    for layer_index, layer in enumerate(layers):
        for section, values in layer.items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown config section [{section}]")
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] must be a table")
            for key, value in values.items():
                merged[section][key] = (value, layer_index == 1)
    parts = {name: _build_section(name, cls, merged[name]) for name, cls in _SECTIONS.items()}
    config = Config(**parts, source=str(file_path or ""))
    config = _resolve_secret_files(config)
    _validate(config)
    return config


def _config_path(path: str | None, env: Mapping[str, str]) -> Path | None:
    if path:
        return Path(path).expanduser()
    if env.get("TOWER_PROXY_CONFIG"):
        return Path(env["TOWER_PROXY_CONFIG"]).expanduser()
    default = Path(DEFAULT_CONFIG_PATH).expanduser()
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for name, (section, key) in _ENV_ALIASES.items():
        if name in env:
            layer.setdefault(section, {})[key] = env[name]
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "TOWER_PROXY_CONFIG":
            continue
        section, key = _split_env_name(name)
        layer.setdefault(section, {})[key] = value
    return layer


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    for section in _SECTIONS:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1 :]
    raise ConfigError(
        f"{name}: unknown setting (expected TOWER_PROXY_<SECTION>_<KEY> "
        f"with SECTION one of {', '.join(s.upper() for s in _SECTIONS)})"
    )


def _build_section(section: str, cls: type[Any], values: Mapping[str, tuple[object, bool]]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for key, (value, from_env) in values.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown key")
        kwargs[key] = _coerce(f"{section}.{key}", known[key], value, from_env=from_env)
    return cls(**kwargs)


def _coerce(name: str, fld: dataclasses.Field[Any], value: object, *, from_env: bool) -> object:
    kind = "size" if fld.metadata.get("size") else str(fld.type)
    parser = _PARSERS[kind]
    try:
        return parser(value, from_env)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _as_str(value: object, from_env: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    return value


def _as_bool(value: object, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError(f"expected true or false, got {_describe(value)}")


def _as_float(value: object, from_env: bool) -> float:
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got {_describe(value)}")
    if isinstance(value, int | float):
        number = float(value)
    elif from_env and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    else:
        raise TypeError(f"expected a number, got {_describe(value)}")
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def _as_int(value: object, from_env: bool) -> int:
    number = _as_float(value, from_env)
    if number != int(number):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def _as_list(value: object, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise TypeError(f"expected a list of strings, got {_describe(value)}")


def _as_int_list(value: object, from_env: bool) -> tuple[int, ...]:
    if from_env and isinstance(value, str):
        return tuple(_as_int(part, True) for part in _as_list(value, True))
    if isinstance(value, list):
        return tuple(_as_int(item, from_env) for item in value)
    raise TypeError(f"expected a list of whole numbers, got {_describe(value)}")


def _as_size(value: object, from_env: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise TypeError(f'expected a size such as "64MiB", got {_describe(value)}')
    return parse_size(value)


def parse_size(text: str) -> int:
    """Parse "64MiB", "1GiB", "500kB" or a plain byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f'expected a size such as "64MiB", got {text!r}')
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


_PARSERS: dict[str, Callable[[object, bool], object]] = {
    "str": _as_str,
    "bool": _as_bool,
    "float": _as_float,
    "int": _as_int,
    "tuple[str, ...]": _as_list,
    "tuple[int, ...]": _as_int_list,
    "size": _as_size,
}


def parse_listen(value: str) -> TcpAddress | UnixAddress:
    """Parse "HOST:PORT", "[::1]:PORT" or "unix:/path.sock"."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path, as in unix:/run/tower-proxy.sock")
        return UnixAddress(path)
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not match:
        raise ValueError(f"expected HOST:PORT, [IPV6]:PORT or unix:/path, got {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return TcpAddress(host, port)


def cannot_listen(key: str, address: TcpAddress | UnixAddress, exc: OSError) -> ConfigError:
    """The error for a listen address the OS refused (in use, no such directory), naming `key`."""
    where = (
        f"unix:{address.path}"
        if isinstance(address, UnixAddress)
        else f"{address.host}:{address.port}"
    )
    return ConfigError(f"{key}: cannot listen on {where}: {exc.strerror}")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve_secret_files(config: Config) -> Config:
    """Read each `<key>_file` secret into the key it stands for."""
    for section, key in (("tower", "client_secret"), ("tokens", "redis_password")):
        config = _resolve_secret_file(config, section, key)
    return config


def _resolve_secret_file(config: Config, section: str, key: str) -> Config:
    part = getattr(config, section)
    path = getattr(part, f"{key}_file")
    if not path:
        return config
    name = f"{section}.{key}_file"
    if getattr(part, key):
        raise ConfigError(f"{name}: set either {key} or {key}_file, not both")
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    return dataclasses.replace(config, **{section: dataclasses.replace(part, **{key: value})})


def _validate_redis(tokens: TokensConfig) -> None:
    url = URL(tokens.redis_url)
    if url.scheme not in {"redis", "rediss", "unix"} or not (url.host or url.path):
        raise ConfigError(
            "tokens.redis_url: expected redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS) "
            "or unix:///path/redis.sock"
        )
    if tokens.redis_lock_ttl < 1:
        raise ConfigError(
            f"tokens.redis_lock_ttl: must be at least 1 second, got {tokens.redis_lock_ttl:g}"
        )


def _validate(config: Config) -> None:
    _validate_upstream_url("tower.api_url", config.tower.api_url)
    _validate_upstream_url("tower.oauth_url", config.tower.oauth_url)
    _validate_ca_file(config.tower.ca_file)
    if (limit := config.tower.max_connections) < 0:
        raise ConfigError(f"tower.max_connections: must be 0 (no limit) or more, got {limit}")
    _validate_redirect_uri(config.tower.redirect_uri)
    _validate_server(config.server)
    if config.tokens.store not in {"file", "redis"}:
        raise ConfigError(f'tokens.store: expected "file" or "redis", got {config.tokens.store!r}')
    if config.tokens.store == "redis":
        _validate_redis(config.tokens)
    if config.log.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            f"log.level: expected debug, info, warning or error, got {config.log.level!r}"
        )
    if config.log.format not in {"auto", "json", "console"}:
        raise ConfigError(f"log.format: expected auto, json or console, got {config.log.format!r}")


def _validate_upstream_url(name: str, value: str) -> None:
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError(f"{name}: expected an absolute https:// URL, got {value!r}")
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(f"{name}: must not carry a query, fragment or credentials")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ConfigError(
            f"{name}: plain http is allowed only on a loopback host "
            f"(the sandbox); use https:// for {url.host}"
        )


def _validate_ca_file(path: str) -> None:
    """Fail at load, naming the key, rather than at the first TLS handshake."""
    if not path:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:  # before OSError, its base class
        raise ConfigError(f"tower.ca_file: {path} holds no PEM certificate") from None
    except OSError as exc:
        raise ConfigError(f"tower.ca_file: cannot read {path}: {exc.strerror}") from None


def _validate_redirect_uri(value: str) -> None:
    if value != OOB_URI and URL(value).scheme != "https":
        raise ConfigError(
            f"tower.redirect_uri: Tower accepts only https:// callbacks or {OOB_URI}, got {value!r}"
        )


def _validate_server(server: ServerConfig) -> None:
    try:
        address = parse_listen(server.listen)
    except ValueError as exc:
        raise ConfigError(f"server.listen: {exc}") from None
    if not server.prefix.startswith("/") or server.prefix.startswith("/-/"):
        raise ConfigError(
            f'server.prefix: expected a path such as "/api/v1", got {server.prefix!r}'
        )
    exposed = isinstance(address, TcpAddress) and not is_loopback_host(address.host)
    if exposed and not server.inbound_keys_file:
        raise ConfigError(
            f"server.listen: {server.listen} is reachable from other hosts; "
            f"set server.inbound_keys_file so callers must send X-Proxy-Key, "
            f"or listen on 127.0.0.1"
        )
    if server.admin_listen:
        try:
            admin = parse_listen(server.admin_listen)
        except ValueError as exc:
            raise ConfigError(f"server.admin_listen: {exc}") from None
        if admin == address and not (isinstance(admin, TcpAddress) and admin.port == 0):
            raise ConfigError("server.admin_listen: must differ from server.listen")
    _validate_processes(server, address)
    if server.read_timeout <= 0 or server.connect_timeout <= 0:
        raise ConfigError("server.read_timeout/connect_timeout: must be greater than 0")
    _validate_security(server, address)


def _validate_security(server: ServerConfig, address: TcpAddress | UnixAddress) -> None:
    _validate_socket_mode(server)
    if server.allowed_uids and not isinstance(address, UnixAddress):
        raise ConfigError(
            "server.allowed_uids: peer credentials exist only on a unix socket; "
            'set server.listen = "unix:/path.sock" or remove allowed_uids'
        )
    for key in ("allow_paths", "deny_paths"):
        for pattern in getattr(server, key):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"server.{key}: {pattern!r} is not a regular expression: {exc}"
                ) from None
    for origin in server.allowed_origins:
        url = URL(origin)
        if url.scheme not in {"http", "https"} or not url.host or url.path not in {"", "/"}:
            raise ConfigError(
                f"server.allowed_origins: expected an origin such as "
                f'"http://localhost:3000" (no "*", no path), got {origin!r}'
            )
    if server.max_header_size < 1024:
        raise ConfigError("server.max_header_size: must be at least 1KiB")
    if server.client_timeout <= 0:
        raise ConfigError("server.client_timeout: must be greater than 0")


def _validate_socket_mode(server: ServerConfig) -> None:
    if not re.fullmatch(r"0?[0-7]{3}", server.unix_socket_mode):
        raise ConfigError(
            f'server.unix_socket_mode: expected an octal mode such as "0600", '
            f"got {server.unix_socket_mode!r}"
        )
    if server.socket_mode & 0o600 != 0o600:
        raise ConfigError("server.unix_socket_mode: the owner needs read and write (0600)")
    if server.socket_mode & 0o007 and not server.allowed_uids:
        raise ConfigError(
            f"server.unix_socket_mode: {server.unix_socket_mode} lets every local user "
            f"use the token; use 0660 with a group, or list server.allowed_uids"
        )


def _validate_processes(server: ServerConfig, address: TcpAddress | UnixAddress) -> None:
    if not 1 <= server.workers <= 64:
        raise ConfigError(f"server.workers: expected 1 to 64, got {server.workers}")
    if server.workers > 1 and isinstance(address, UnixAddress):
        raise ConfigError("server.workers: more than 1 needs a TCP listen address (SO_REUSEPORT)")
    if server.workers > 1 and server.admin_listen:
        # Each worker has its own metrics and readiness: one admin port cannot speak for all.
        raise ConfigError("server.workers: more than 1 cannot be combined with admin_listen")
    if server.event_loop not in {"auto", "uvloop", "asyncio"}:
        raise ConfigError(
            f'server.event_loop: expected "auto", "uvloop" or "asyncio", got {server.event_loop!r}'
        )
    if server.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigError('server.event_loop: "uvloop" is not installed (pip install uvloop)')


def masked(config: Config) -> dict[str, dict[str, object]]:
    """The effective config as plain data, every secret replaced by a mask."""
    result: dict[str, dict[str, object]] = {}
    for name in _SECTIONS:
        section = getattr(config, name)
        values: dict[str, object] = {}
        for fld in dataclasses.fields(section):
            value = getattr(section, fld.name)
            if fld.metadata.get("secret") and value:
                value = _mask_url(value) if "://" in value else "********"
            values[fld.name] = list(value) if isinstance(value, tuple) else value
        result[name] = values
    return result


def _mask_url(value: str) -> str:
    url = URL(value)
    return str(url.with_password("********")) if url.password else value
