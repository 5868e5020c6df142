"""Progress of a long experiment: runs done / total, elapsed time, estimate.

On a terminal a tqdm bar (runs done / total, elapsed, time left, the last run's
result) is redrawn in place after every finished run. In
a log (not a TTY: ``nohup``, a job scheduler, a pipe, CI) a redrawn line would be
noise, so each finished run prints one plain line instead (Keras' ``verbose=2``
habit), and :meth:`Progress.close` prints one final line either way.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a person watches (not a log, not CI)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Counts finished runs; ``todo`` of ``total`` runs are trained in this call.

    The estimate is elapsed time per run trained so far times the runs left,
    which is honest enough when runs are alike and says nothing before the
    first run ends.
    """

    def __init__(self, total: int, todo: int, *, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total, self.todo = total, todo
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = interactive(self.stream) if enabled is None else enabled
        # Not a terminal and not silenced: one line per finished run.
        self.log = enabled is None and not self.enabled
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, note: str = "") -> str:
        reused = self.total - self.todo
        done = reused + self.done
        text = f"[{done}/{self.total} runs] {_clock(self.elapsed)} elapsed"
        if 0 < self.done < self.todo:
            left = self.elapsed / self.done * (self.todo - self.done)
            text += f", about {_clock(left)} left"
        return f"{text}  {note}" if note else text

    def start(self, note: str = "") -> None:
        """Draw the bar, so a terminal shows something before the first run ends."""
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.total - self.todo,
                             file=self.stream, unit="run", dynamic_ncols=True,
                             desc="memory", leave=False, mininterval=0.0)
            self._bar.set_postfix_str(note or f"training {self.todo} runs")

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self.log:
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)

    def close(self) -> str:
        """End the status line and print the final one (always, TTY or not)."""
        reused = self.total - self.todo
        final = (f"{self.total} runs: {self.done} trained in {self.elapsed:.1f} s, "
                 f"{reused} already finished")
        if self._bar is not None:
            self._bar.close()  # leave=False: the bar is cleared, the final line stays
            self._bar = None
        self.stream.write(final + "\n")
        self.stream.flush()
        return final
