"""tower-proxy: a local authenticating reverse proxy for the Tower API."""

from __future__ import annotations


def version() -> str:
    """The installed distribution's version ("unknown" from a checkout never installed)."""
    from importlib import metadata  # ~60 ms of imports: not for `tower-proxy token`

    try:
        return metadata.version("tower-proxy")
    except metadata.PackageNotFoundError:
        return "unknown"


def compiled() -> bool:
    """Whether this is the compiled build (mypyc, `scripts/wheel`) rather than plain Python."""
    from . import upstream  # one of the compiled modules

    return (upstream.__file__ or "").endswith(".so")
