"""What every torture class shares: the CLI as a real process, the tally, the one-line rule."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CLI = [sys.executable, "-c", "import sys; from rnnlab.cli import main; sys.exit(main())"]


@dataclass
class Tally:
    """One class of the table: how many cases were tried and which did not hold."""

    name: str
    tried: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, ok: bool, what: str) -> None:
        self.tried += 1
        if ok:
            self.held += 1
        else:
            self.failures.append(what)


def one_line(stderr: str) -> bool:
    """Exactly one ``rnnlab: error:`` line and no traceback (warnings may precede it)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("rnnlab: error:")]
    return "Traceback" not in stderr and len(errors) == 1 and lines[-1] == errors[0]


def rnnlab(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``rnnlab ARGS`` as its own process and wait for it."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def start(*args: str | Path) -> subprocess.Popen:
    """Start ``rnnlab ARGS`` as its own process (stdout and stderr captured)."""
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of an atomic write anywhere under ``folder``."""
    return [p for p in folder.rglob(".*.tmp") if p.is_file()]
