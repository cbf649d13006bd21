"""A one-line text progress bar on stderr for the headless commands (no dependency); Ctrl-C
as a cancel request is ``common.tasks.SigintCancel``."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

BAR_WIDTH = 28


class ProgressBar:
    """``progress(fraction, message, metrics)`` callable drawing ``[#####.....]  42% message``.

    Redraws at most every ``min_interval_s`` on a terminal (``\\r``); when stderr is not a
    terminal it prints a plain line only when the message says an epoch ended or at 100%.
    """

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.last_draw = 0.0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.open_line = False

    def __call__(
        self, fraction: float, message: str, metrics: dict[str, Any] | None = None
    ) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        epoch_end = metrics is not None and "val_acc" in metrics
        now = time.monotonic()
        if self.interactive:
            if now - self.last_draw < self.min_interval_s and fraction < 1.0 and not epoch_end:
                return
            filled = round(BAR_WIDTH * fraction)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {fraction:4.0%} {message[:70]:<70}")
            if epoch_end:
                self.stream.write("\n")
            self.open_line = not epoch_end
        elif epoch_end or fraction >= 1.0:
            self.stream.write(f"{fraction:4.0%} {message}\n")
        self.stream.flush()
        self.last_draw = now

    def close(self) -> None:
        """End an unfinished bar line."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False
