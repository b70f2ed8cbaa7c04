"""The upstream client's tests run on the default event loop and on uvloop.

pytest-asyncio parametrizes every async test under this directory with the
loop factories this hook returns; a hook, unlike a fixture, is found only in
a conftest, so these tests have a directory of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
