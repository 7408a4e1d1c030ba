"""Progress of long work on stderr: i/N, the rate and the time left.

On a terminal one line redrawn in place (a bar); piped or redirected, plain lines, the first, the last and
at most one every ``interval`` seconds between, so a log file stays short. The commands' results stay on
stdout: ``echo`` prints a line there (or on stderr) without tearing the bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR = 24  # characters of the bar on a terminal
REDRAW = 0.1  # seconds between redraws of the bar


def duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``advance()`` after each item of ``total``; ``close()`` (or the ``with`` block's end) ends the bar."""

    def __init__(self, total: int, label: str, unit: str = "image", stream: TextIO | None = None,
                 live: bool | None = None, interval: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.total, self.label, self.unit = max(int(total), 0), label, unit
        self.stream = sys.stderr if stream is None else stream
        self.live = _is_terminal(self.stream) if live is None else live
        self.interval, self.clock = interval, clock
        self.done, self.start = 0, clock()
        self._shown_at: float | None = None
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self) -> str:
        """``label 3/10 images, 0.52 image/s, 0:13 left`` (the bar in front on a terminal)."""
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        units = self.unit if self.total == 1 else f"{self.unit}s"
        text = f"{self.label} {self.done}/{self.total} {units}"
        if rate is not None:
            speed = f"{rate:.2f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}"
            left = (self.total - self.done) / rate
            text += f", {speed}, {duration(left)} left" if self.done < self.total else \
                f", {speed}, {duration(elapsed)} in all"
        if self.live:
            filled = BAR * self.done // self.total if self.total else BAR
            text = f"[{'#' * filled}{'.' * (BAR - filled)}] {text}"
        return text

    def advance(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total) if self.total else self.done + n
        now = self.clock()
        last = self.done >= self.total
        if self.live:
            if last or self._shown_at is None or now - self._shown_at >= REDRAW:
                self._draw(now)
        elif last or self._shown_at is None or now - self._shown_at >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._shown_at = now

    def _draw(self, now: float) -> None:
        self.stream.write("\r\033[K" + self.line())
        self.stream.flush()
        self._shown_at, self._drawn = now, True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def echo(self, text: str, stream: TextIO | None = None) -> None:
        """Print ``text`` (stdout by default) as its own line, the bar drawn again below it."""
        self._clear()
        out = sys.stdout if stream is None else stream
        print(text, file=out, flush=True)
        if self._drawn:
            self._draw(self.clock())

    def close(self) -> None:
        """End the bar's line on a terminal (the last state stays on screen)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Stages:
    """Work in stages (``bench``: warm-up, then timing), each with its own count: ``stages(label, total)``
    ends the stage before and returns the new one's ``advance``."""

    def __init__(self, unit: str = "call", stream: TextIO | None = None, live: bool | None = None):
        self.unit, self.stream, self.live = unit, stream, live
        self.current: Progress | None = None

    def __call__(self, label: str, total: int) -> Callable[[], None]:
        self.close()
        self.current = Progress(total, label, unit=self.unit, stream=self.stream, live=self.live)
        return self.current.advance

    def echo(self, text: str, stream: TextIO | None = None) -> None:
        if self.current is None:
            print(text, file=sys.stdout if stream is None else stream, flush=True)
        else:
            self.current.echo(text, stream)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
