"""What the stages say while they run: log messages, progress, and a CSV log that grows.

Everything goes through the `nerfpipe` logger, to stderr (the workflow's rules send stderr to
the job's log file). `setup_logging` sets its level from the CLI's -v / -q.

Progress of a long loop (training iterations, evaluated images, rendered frames) is a tqdm bar
when stderr is a terminal; otherwise (a log file, a pipe, a cluster job) it is one line every
`interval()` seconds, e.g.

    train nerf: iteration 1200/3000 (40%), loss 0.01234, train PSNR 19.09 dB, 2,450 rays/s,
    elapsed 0:04:10, ETA 0:06:15

The interval is the CLI's --progress-interval, else $NERFPIPE_PROGRESS_INTERVAL, else 30 s.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from nerfpipe.errors import NerfpipeError

LOGGER = logging.getLogger("nerfpipe")
INTERVAL_ENV = "NERFPIPE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
MODES = ("bar", "log", "off")
PLAIN_FORMAT = "%(message)s"
VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

T = TypeVar("T")
_interval_override: float | None = None


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever sys.stderr is when a record is emitted (a redirection or
    a test's capture made after the handler was installed still gets the messages)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter(PLAIN_FORMAT))
if not LOGGER.handlers:
    # Messages reach stderr at INFO without any set-up, whether nerfpipe runs from its CLI or is
    # called as a library; an application that configures logging itself can remove the handler.
    LOGGER.addHandler(_HANDLER)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def setup_logging(verbosity: int = 0) -> None:
    """-q (verbosity < 0): warnings and errors only, no progress; default: progress and notes;
    -v (> 0): debug messages too, each line with time, level and logger name."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    LOGGER.setLevel(level)
    _HANDLER.setFormatter(logging.Formatter(VERBOSE_FORMAT if verbosity > 0 else PLAIN_FORMAT))


def parse_interval(text: str, source: str) -> float:
    """A positive number of seconds, or a one-line error naming `source`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise NerfpipeError(f"{source}: expected a positive number of seconds, got {text!r}")
    return value


def set_interval(seconds: float | None) -> None:
    """Override the interval between progress lines for this process (None: back to the default)."""
    global _interval_override
    _interval_override = None if seconds is None else parse_interval(str(seconds), "--progress-interval")


def interval() -> float:
    """Seconds between two progress lines: set_interval's value, else $NERFPIPE_PROGRESS_INTERVAL,
    else DEFAULT_INTERVAL_S."""
    if _interval_override is not None:
        return _interval_override
    text = os.environ.get(INTERVAL_ENV, "").strip()
    return parse_interval(text, INTERVAL_ENV) if text else DEFAULT_INTERVAL_S


def resolve_mode(progress: bool | str | None = None) -> str:
    """'bar' (tqdm), 'log' (a line every interval) or 'off'. None chooses: off when the logger is
    quiet (-q), a bar when stderr is a terminal, else log lines. True forces the bar."""
    if progress is False:
        return "off"
    if progress is True:
        return "bar"
    if isinstance(progress, str):
        if progress not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {progress!r}")
        return progress
    if not LOGGER.isEnabledFor(logging.INFO):
        return "off"
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "bar" if tty else "log"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of `total` steps named `unit`, as a bar or as periodic log lines (see module doc).

    `update()` after each step; in log mode the caller asks `due()` and then writes `log(...)` with
    its own fields (so expensive figures are computed only for the lines that are written), or
    calls `step()`, which does both without fields.
    """

    def __init__(self, total: int, desc: str, unit: str = "step", initial: int = 0,
                 mode: bool | str | None = None, every: float | None = None) -> None:
        self.mode = resolve_mode(mode)
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, int(initial)
        self.every = interval() if every is None else float(every)
        self._start = self._last = time.monotonic()
        self._start_n = self._last_n = self.n
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **fields: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix(**fields)

    def due(self) -> bool:
        """True in log mode once `every` seconds have passed since the last line (or the start)."""
        return self.mode == "log" and time.monotonic() - self._last >= self.every

    def window_rate(self) -> float:
        """Steps per second since the last line (or the start)."""
        return (self.n - self._last_n) / max(time.monotonic() - self._last, 1e-9)

    def log(self, *fields: str) -> None:
        """Write one progress line: desc, unit n/total, the caller's fields, elapsed time, ETA."""
        now = time.monotonic()
        elapsed = now - self._start
        done = self.n - self._start_n
        eta = (self.total - self.n) * elapsed / done if done > 0 else math.inf
        pct = 100.0 * self.n / self.total if self.total else 100.0
        parts = [f"{self.unit} {self.n}/{self.total} ({pct:.0f}%)", *fields,
                 f"elapsed {format_duration(elapsed)}", f"ETA {format_duration(eta)}"]
        LOGGER.info("%s: %s", self.desc, ", ".join(parts))
        self._last, self._last_n = now, self.n

    def step(self, n: int = 1) -> None:
        self.update(n)
        if self.due():
            self.log()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def track(items: Sequence[T], desc: str, unit: str, mode: bool | str | None = None) -> Iterator[T]:
    """Iterate over `items`, reporting progress after each one is done (i.e. when the next one is
    asked for): `for x in track(views, "evaluate nerf", "image"): ...`."""
    progress = Progress(len(items), desc, unit, mode=mode)
    try:
        for item in items:
            yield item
            progress.step()
    finally:
        progress.close()


class LiveCsv:
    """A CSV log that grows while a job runs: each `append` writes one row to the end of the file
    and flushes it, so the file can be read (plotted) before the job ends.

    `reset(rows)` rewrites the file atomically with exactly `rows` (at the start, and on resume
    with the rows a checkpoint holds). Columns are fixed by the rows written first; a row with a
    new column rewrites the file atomically with all rows. The text is the same as
    `nerfpipe.io.write_csv` of the same rows, which the stage still uses for the final file.
    """

    def __init__(self, path: Path, empty_header: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.empty_header = empty_header
        self.columns: list[str] | None = None

    def reset(self, rows: Iterable[dict]) -> None:
        from nerfpipe import io as nio

        rows = list(rows)
        nio.write_csv(self.path, rows, empty_header=self.empty_header)
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        self.columns = columns or None

    def append(self, row: dict, all_rows: list[dict]) -> None:
        """Add `row`, the last of `all_rows` (every row so far, used when the file is rewritten)."""
        from nerfpipe import io as nio

        if self.columns is None or any(k not in self.columns for k in row) or not self.path.is_file():
            self.reset(all_rows)
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self.columns).writerow(row)
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                f.write(buf.getvalue())
                f.flush()
        except OSError as exc:
            raise nio.write_error(self.path, exc) from exc
