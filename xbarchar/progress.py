"""Progress of long work: a tqdm bar on a terminal, a log line every ``log_every_s`` seconds otherwise.

A :class:`Progress` names what is being done (its ``stage``, e.g. ``"scenario noise_0.2, seed 2/4,
bn_finetune"``), counts units towards an optional total and estimates the rate and the time left. When
stderr is a terminal it draws a tqdm bar; otherwise (a Snakemake log file, a pipe) it logs one line at
most every ``log_every_s`` seconds and a final line at :meth:`Progress.close`, so a log file holds
readable lines and no carriage returns. Disabled (``--quiet``, ``--no-progress``) it shows nothing.

Progresses opened inside one another (an evaluation's seeds around a fine-tuning's epochs) prefix their
lines with the stages of the ones around them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_OPEN: list[Progress] = []
"""The progresses started and not yet closed, outermost first."""

_SHOWN = [True]
"""Whether progresses made with ``enabled=None`` show anything (:func:`show_progress`)."""


def show_progress(shown: bool) -> bool:
    """Switch the process's progresses made with ``enabled=None`` on or off (``--no-progress`` and
    ``--quiet`` switch them off for the whole command, module-level ones such as ``spice.exact.PROGRESS``
    included); returns the setting before."""
    before, _SHOWN[0] = _SHOWN[0], bool(shown)
    return before


def format_duration(seconds: float) -> str:
    """``seconds`` as '42 s', '3 min 20 s' or '2 h 05 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Counts ``unit``s of work towards ``total`` (None: unknown) under the name ``stage``.

    ``enabled=False`` shows nothing; ``None`` follows the process's setting (:func:`show_progress`). ``clock`` (seconds) and ``is_terminal`` are injectable for tests;
    ``logger`` receives the log lines (default: this module's)."""

    def __init__(self, total: int | None = None, stage: str = "", unit: str = "it", *, enabled: bool | None = True,
                 log_every_s: float = 20.0, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic, is_terminal: Callable[[], bool] | None = None) -> None:
        self.total, self.stage, self.unit = total, stage, unit
        self._enabled, self.log_every_s = enabled, log_every_s
        self.logger = logger or log
        self.clock = clock
        self.is_terminal = is_terminal or sys.stderr.isatty
        self.done = 0
        self.what = ""
        self._t0 = self._last_log = clock()
        self._bar: Any = None
        self._started = False

    @property
    def enabled(self) -> bool:
        """Whether this progress shows anything."""
        return _SHOWN[0] if self._enabled is None else self._enabled

    @enabled.setter
    def enabled(self, value: bool | None) -> None:
        self._enabled = value

    # ------------------------------------------------------------------ life cycle
    def start(self, total: int | None = None, stage: str | None = None) -> Progress:
        """Restart the count at 0 towards ``total`` (None keeps the total given before) under ``stage``."""
        self.close()
        self.done, self.what = 0, ""
        if total is not None:
            self.total = total
        if stage is not None:
            self.stage = stage
        self._t0 = self._last_log = self.clock()
        self._started = True
        _OPEN.append(self)
        if self.enabled and self.is_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.stage or None, unit=self.unit, leave=None,
                             dynamic_ncols=True)
        return self

    def expect(self, total: int | None, stage: str = "") -> None:
        """Start counting towards ``total`` (None: no estimate) under ``stage``."""
        self.close()
        self.total = total
        self.start(stage=stage)

    def close(self) -> None:
        """Close the bar, or log the final line (once per :meth:`start`)."""
        if not self._started:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:
            self.logger.info("%s", self.line())
        self._started = False
        if self in _OPEN:
            _OPEN.remove(self)

    def __enter__(self) -> Progress:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ counting
    def set_stage(self, stage: str) -> None:
        """Name what is being done from now on."""
        self.stage = stage
        if self._bar is not None:
            self._bar.set_description_str(stage, refresh=False)

    def advance(self, n: int = 1, what: str = "") -> None:
        """``n`` more units done; ``what`` (optional) details the last step (a loss, a tile shape)."""
        self.done += n
        self.what = what or self.what
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self.what, refresh=False)
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            self.logger.info("%s", self.line(now))

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, advancing by one after each; closes at the end."""
        with self:
            for item in items:
                yield item
                self.advance()

    # ------------------------------------------------------------------ text
    def context(self) -> str:
        """The stages of the progresses opened around this one, outermost first."""
        outer = _OPEN[:_OPEN.index(self)] if self in _OPEN else []
        return " > ".join(p.stage for p in outer if p.stage and p.enabled)

    def line(self, now: float | None = None) -> str:
        """The progress as one line: stage, count of total, rate, time left, last detail."""
        elapsed = (self.clock() if now is None else now) - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done} {self.unit}"
        if self.total:
            count = f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
        if rate >= 1:
            speed = f"{rate:.0f} {self.unit}/s" if rate >= 10 else f"{rate:.1f} {self.unit}/s"
        elif self.done:
            speed = f"{elapsed / self.done:.1f} s/{self.unit}"
        else:
            speed = f"0 {self.unit}/s"
        left = ""
        if self.total and rate > 0:
            left = f", ~{format_duration(max(self.total - self.done, 0) / rate)} left"
        stage = " > ".join(s for s in (self.context(), self.stage or "progress") if s)
        return (f"{stage}: {count}, {speed} over {format_duration(elapsed)}{left}"
                f"{'; ' + self.what if self.what else ''}")
