"""`python -m proxy` is the `tower-proxy` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
