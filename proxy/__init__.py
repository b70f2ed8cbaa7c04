"""tower-proxy: a local authenticating reverse proxy for the Tower API."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed distribution's version ("unknown" from a checkout never installed)."""
    try:
        return metadata.version("tower-proxy")
    except metadata.PackageNotFoundError:
        return "unknown"
