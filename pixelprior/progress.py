"""The one progress bar of the project: training, sampling and encoding all use :func:`progress_bar`.

On a terminal (or in a notebook) it is a tqdm bar redrawn a few times a second. Written into a log (a file, a pipe,
a batch job's output) a redrawn bar would be one carriage-returned line per update — 963 KB for the demo's 6,000
steps — so there it prints whole lines instead: one when a few percent more are done or some tens of seconds have
passed, whichever comes first, and a last one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm as std_tqdm
from tqdm.auto import tqdm as auto_tqdm

TERMINAL_REFRESH_S = 0.25  # a terminal bar is redrawn at most 4 times a second
LOG_EVERY_FRACTION = 0.05  # a log gets a line every 5% ...
LOG_EVERY_S = 30.0  # ... or every 30 s, whichever comes first


class LogProgress(std_tqdm):
    """A tqdm bar for logs: whole lines, at most one per :data:`LOG_EVERY_FRACTION` of the total or per
    :data:`LOG_EVERY_S` seconds, never a carriage return."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._last_line_n: float | None = None
        self._last_line_t = 0.0
        # Every update reaches display(), which decides; tqdm's own time and count throttles are off.
        super().__init__(*args, mininterval=0, miniters=1, ascii=True, dynamic_ncols=False, **kwargs)

    def _due(self) -> bool:
        if self._last_line_n is None or (self.total and self.n >= self.total):
            return True
        if time.monotonic() - self._last_line_t >= LOG_EVERY_S:
            return True
        return bool(self.total) and self.n - self._last_line_n >= LOG_EVERY_FRACTION * self.total

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        if msg != "" and self.n != self._last_line_n and self._due():  # "": tqdm clearing the line
            self._write_line(msg)

    def _write_line(self, msg: str | None = None) -> None:
        self.fp.write((msg if msg is not None else self.__str__()) + "\n")
        self.fp.flush()
        self._last_line_n, self._last_line_t = self.n, time.monotonic()

    def close(self) -> None:
        if not getattr(self, "disable", True):
            self._ema_dt = lambda: None  # the last line shows the overall rate, as tqdm's own last line does
            if self.n != self._last_line_n:  # the last line, unless the count did not move since the last one
                self._write_line()
        self.leave = False  # tqdm would end a kept bar with a bare newline
        super().close()

    def clear(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to clear: earlier lines stay in the log."""


def is_interactive(file: Any = None) -> bool:
    """Whether progress goes to a terminal or a notebook (a redrawn bar), rather than to a log (lines)."""
    if "notebook" in auto_tqdm.__module__:  # tqdm.auto picked its notebook widget (Jupyter)
        return True
    stream = file if file is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    initial: float = 0,
    disable: bool = False,
    leave: bool = True,
    file: Any = None,
) -> std_tqdm:
    """A progress bar over ``iterable`` (or updated by hand up to ``total``), drawn for where it goes.

    Args:
        iterable: what to iterate over, or None to call ``update`` by hand.
        total: the number of updates expected (default: ``len(iterable)``).
        desc: the label before the bar.
        unit: what one update counts.
        initial: where the count starts (a resumed run).
        disable: no bar at all (other processes than the main one, ``progress=False``).
        leave: keep the finished bar on a terminal.
        file: where to write (default: stderr).

    Example:
        >>> bar = progress_bar(total=3, desc="train", unit="step", disable=True)
        >>> for _ in range(3):
        ...     bar.update(1)
        >>> bar.close()
    """
    kwargs = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave, file=file)
    if disable or is_interactive(file):
        return auto_tqdm(iterable, mininterval=TERMINAL_REFRESH_S, **kwargs)
    return LogProgress(iterable, **kwargs)
