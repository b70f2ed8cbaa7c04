"""Instructions per proxied request, counted by valgrind: the hot-path number that holds still.

`bench.hot_path`'s µs wander by 10-20% between runs on a shared VM; an
instruction count repeats within about 0.2%, so a change of 1% shows.  The
same in-process driver runs under callgrind at two request counts, and the
difference is divided by the extra requests: start-up, imports and set-up
cancel out.  Instructions are not time (cache misses and syscalls are not
in them), so confirm a gain with the benchmark's CPU per request.

    .venv/bin/python -m bench.instructions                      # log.level info
    .venv/bin/python -m bench.instructions --log-level warning  # without the log line
    .venv/bin/python -m bench.instructions --layers             # what each layer adds
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .hot_path import LAYERS, measure
from .stack import PYTHON, ROOT


def count(requests: int, log_level: str, layer: str) -> int:
    """Instructions callgrind counted for a whole driver run of `requests` requests."""
    argv = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        PYTHON, "-m", "bench.instructions", "--child", str(requests), "--log-level", log_level,
        "--layer", layer,
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(*, few: int, many: int, log_level: str, layer: str = "app") -> float:
    with ThreadPoolExecutor(2) as pool:  # the two runs side by side, a core each
        small, large = pool.map(lambda n: count(n, log_level, layer), (few, many))
    return (large - small) / (many - few)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--few", type=int, default=500)
    parser.add_argument("--many", type=int, default=2500)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--layer", choices=LAYERS, default="app", help="count up to this layer")
    parser.add_argument("--layers", action="store_true", help="count up to each layer in turn")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # the run under valgrind
    args = parser.parse_args()
    if args.child is not None:
        work = Path(tempfile.mkdtemp(prefix="tower-proxy-instructions-"))
        measure(
            requests=args.child, rounds=1, log_level=args.log_level, work=work, layer=args.layer
        )
        shutil.rmtree(work, ignore_errors=True)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is missing: scripts/setup.d/30-bench.sh installs it", file=sys.stderr)
        return 2
    below = 0.0
    for layer in LAYERS if args.layers else (args.layer,):
        value = per_request(few=args.few, many=args.many, log_level=args.log_level, layer=layer)
        added = f" (+{value - below:.0f})" if args.layers else ""
        print(f"{value:.0f} instructions per request up to the {layer} layer{added} "
              f"(log.level = {args.log_level}; {args.few} and {args.many} requests under "
              "callgrind)", flush=True)  # fmt: skip
        below = value
    return 0


if __name__ == "__main__":
    sys.exit(main())
