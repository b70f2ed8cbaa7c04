"""Finding secrets in log files: the check behind the whole run's leak test."""

from __future__ import annotations

from pathlib import Path

SESSION_SECRETS: set[str] = set()
# Values the sandbox reports that are too short or too common to mean a leak.
_MIN_LENGTH = 8


def scan_logs(directory: Path, secrets: set[str]) -> list[str]:
    """Every (file, line number) where a secret appears, as readable lines."""
    wanted = {s for s in secrets if len(s) >= _MIN_LENGTH}
    leaks = []
    for path in sorted(directory.glob("*")):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for secret in wanted:
                if secret in line:
                    leaks.append(f"{path.name}:{number}: a secret ({secret[:4]}…) appears")
    return leaks
