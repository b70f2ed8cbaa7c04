"""tower-proxy: a local authenticating reverse proxy for the Tower API."""

from __future__ import annotations


def version() -> str:
    """The installed distribution's version ("unknown" from a checkout never installed)."""
    from importlib import metadata  # ~60 ms of imports: not for `tower-proxy token`

    try:
        return metadata.version("tower-proxy")
    except metadata.PackageNotFoundError:
        return "unknown"
